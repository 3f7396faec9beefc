#!/usr/bin/env python3
"""Regenerates airport-zones/zones.csv: every airport with an IATA code and
its IANA time zone, from the `airportsdata` package (PyPI, MIT licence), which
is maintained from public sources and released several times a year.

  pip install airportsdata==20260905   # or a newer release
  scripts/airport-zones.py > airport-zones/zones.csv

Only the two columns the adapters need are kept (about 8,000 short lines), so
the table compiled into the provider stays small. Rows are sorted by code so
the reader can binary-search them; the first line names the release.
"""

import importlib.metadata
import sys

import airportsdata


def main():
    airports = airportsdata.load("IATA")
    version = importlib.metadata.version("airportsdata")
    out = sys.stdout
    out.write(f"# airportsdata {version}: IATA code, IANA time zone\n")
    for code in sorted(airports):
        zone = airports[code]["tz"]
        # A row without a zone would only ever be a miss; leave it out.
        if len(code) == 3 and code.isalpha() and code.isupper() and zone:
            out.write(f"{code},{zone}\n")


if __name__ == "__main__":
    main()
