#!/usr/bin/env python3
"""Redis' cost of a benchmark run: commands by type and CPU, per search.

Reads INFO commandstats and INFO cpu of every node given, runs the command
after `--`, reads them again and prints, summed over the nodes and per node,
each command's calls per search and its server time per call (usec), the Redis CPU (used_cpu_sys + used_cpu_user)
per search and each node's commands per second over the run. Commands run
inside a Lua script count under their own names as well as the EVALSHA.
The load generator's own commands (INFO sampling, HGETALL reading the state
hashes back) are left out; nothing else may use these nodes meanwhile.

  scripts/redis-cost.py --searches 5000 --nodes 127.0.0.1:6390 -- \\
      target/release/loadgen throughput --url ... --searches 5000
"""

import argparse
import json
import subprocess
import sys
import time

# Sent by the load generator itself, never by the services.
OWN = {"info", "hgetall", "hello", "client|setinfo", "client|list"}


def info(node, section):
    host, port = node.rsplit(":", 1)
    out = subprocess.run(
        ["redis-cli", "-h", host, "-p", port, "INFO", section],
        check=True, capture_output=True, text=True,
    ).stdout
    return dict(
        line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#")
    )


def snapshot(nodes):
    snap = {}
    for node in nodes:
        calls, usec = {}, {}
        for key, value in info(node, "commandstats").items():
            fields = dict(f.split("=") for f in value.split(","))
            calls[key.removeprefix("cmdstat_")] = int(fields["calls"])
            usec[key.removeprefix("cmdstat_")] = int(fields["usec"])
        cpu = info(node, "cpu")
        snap[node] = {
            "calls": calls,
            "usec": usec,
            "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        }
    return snap


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", required=True, help="comma-separated host:port of every node")
    parser.add_argument("--searches", type=int, required=True, help="searches the command runs")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark command after --")
    nodes = args.nodes.split(",")
    before = snapshot(nodes)
    started = time.monotonic()
    status = subprocess.run(command).returncode
    elapsed = time.monotonic() - started
    after = snapshot(nodes)

    per_command, usec = {}, {}
    report = {"searches": args.searches, "elapsed_secs": round(elapsed, 2), "nodes": {}}
    for node in nodes:
        b, a = before[node], after[node]
        delta = {
            name: calls - b["calls"].get(name, 0)
            for name, calls in a["calls"].items()
            if name not in OWN and calls > b["calls"].get(name, 0)
        }
        for name, calls in delta.items():
            per_command[name] = per_command.get(name, 0) + calls
            usec[name] = usec.get(name, 0) + a["usec"][name] - b["usec"].get(name, 0)
        ops = sum(delta.values())
        cpu = a["cpu"] - b["cpu"]
        report["nodes"][node] = {
            "commands": ops,
            "commands_per_sec": round(ops / elapsed),
            "cpu_secs": round(cpu, 3),
            "cpu_ms_per_search": round(1000 * cpu / args.searches, 4),
        }
    total_cpu = sum(n["cpu_secs"] for n in report["nodes"].values())
    report["cpu_ms_per_search"] = round(1000 * total_cpu / args.searches, 4)
    report["commands_per_search"] = round(sum(per_command.values()) / args.searches, 2)
    report["per_search"] = {
        name: {"calls": round(calls / args.searches, 3), "usec_per_call": round(usec[name] / calls, 2)}
        for name, calls in sorted(per_command.items(), key=lambda kv: -kv[1])
    }
    print(json.dumps(report, indent=1))
    sys.exit(status)


if __name__ == "__main__":
    main()
