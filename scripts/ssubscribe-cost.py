#!/usr/bin/env python3
"""Redis CPU of one SSUBSCRIBE + SUNSUBSCRIBE pair, as main-service sends per
search and instance on a cluster, against two PINGs on the same connection.

Sends the commands one at a time on a plain socket to one cluster node, on
channels named like the search channels (`{flight.search.results:<id>}:events`)
whose slots lie in that node's range, and reads `INFO cpu` before and after.

  scripts/ssubscribe-cost.py --port 7101 --slots 0-5460 --pairs 20000
"""

import argparse
import socket
import subprocess
import uuid


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def used_cpu(port):
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "cpu"], check=True, capture_output=True, text=True
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


def encode(*args):
    return (f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode()


def read_reply(replies):
    """Reads one RESP2 reply: a simple string or an array of bulk strings and integers."""
    line = replies.readline()
    if line.startswith(b"-"):
        raise SystemExit(f"redis refused: {line.decode().strip()}")
    if line.startswith(b"*"):
        for _ in range(int(line[1:])):
            if replies.readline().startswith(b"$"):
                replies.readline()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="a cluster master on 127.0.0.1")
    parser.add_argument("--slots", required=True, help="that master's slot range, e.g. 0-5460")
    parser.add_argument("--pairs", type=int, default=20000)
    args = parser.parse_args()
    low, high = (int(x) for x in args.slots.split("-"))
    channels = []
    while len(channels) < args.pairs:
        tag = f"flight.search.results:{uuid.uuid4()}"
        if low <= crc16(tag.encode()) % 16384 <= high:
            channels.append("{" + tag + "}:events")
    conn = socket.create_connection(("127.0.0.1", args.port))
    replies = conn.makefile("rb")
    start = used_cpu(args.port)
    for _ in range(2 * args.pairs):
        conn.sendall(encode("PING"))
        read_reply(replies)
    pinged = used_cpu(args.port)
    for channel in channels:
        conn.sendall(encode("SSUBSCRIBE", channel))
        read_reply(replies)
        conn.sendall(encode("SUNSUBSCRIBE", channel))
        read_reply(replies)
    end = used_cpu(args.port)
    per_pair = lambda secs: f"{secs * 1e6 / args.pairs:.1f} us"
    print(f"two PINGs: {per_pair(pinged - start)} of Redis CPU")
    print(f"SSUBSCRIBE + SUNSUBSCRIBE: {per_pair(end - pinged)} of Redis CPU")


if __name__ == "__main__":
    main()
