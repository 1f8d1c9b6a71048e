#!/usr/bin/env python3
"""Convert ip-location-db CSVs (numeric form) into PhoneHome's compact geo file.

Inputs are the `*-num.csv` files of the npm packages @ip-location-db/geo-whois-asn-country
(country; CC0) and @ip-location-db/asn (AS number and name; CC BY 4.0, RouteViews, DB-IP, NRO).
Each table becomes sorted range starts with one value per range; a gap between ranges gets an
explicit "no value" range, and neighbours with the same value are merged. The layout is
documented in rust-core/src/geo/mod.rs.

Usage: geo-convert.py COUNTRY_V4 COUNTRY_V6 ASN_V4 ASN_V6 OUT
"""
import csv
import struct
import sys

MAGIC = b"PHGEO001"


def segments(path, parse_value, none, limit):
    """(start, value) list covering the space from the first range on, gaps as `none`."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.reader(f):
            if len(rec) < 3:
                continue
            start, end = int(rec[0]), int(rec[1])
            if start > end or end > limit:
                continue
            rows.append((start, end, parse_value(rec)))
    rows.sort(key=lambda r: r[0])
    out = []

    def push(start, value):
        if not out or out[-1][1] != value:
            out.append((start, value))

    covered = -1  # highest address covered so far
    for start, end, value in rows:
        if end <= covered:
            continue  # inside an earlier range
        start = max(start, covered + 1)
        if start > covered + 1:
            push(covered + 1, none)
        push(start, value)
        covered = end
    if covered < limit:
        push(covered + 1, none)
    return out


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    c4, c6, a4, a6, out = sys.argv[1:]
    country = lambda r: r[2].strip().upper().encode("ascii", "replace")[:2].ljust(2, b"\0")
    names = {}

    def asn(r):
        try:
            n = int(r[2])
        except ValueError:
            return 0
        if len(r) > 3 and r[3].strip() and n not in names:
            names[n] = r[3].strip()
        return n

    v4max, v6max = 2**32 - 1, 2**128 - 1
    tc4 = segments(c4, country, b"\0\0", v4max)
    tc6 = segments(c6, country, b"\0\0", v6max)
    ta4 = segments(a4, asn, 0, v4max)
    ta6 = segments(a6, asn, 0, v6max)

    blob = bytearray()
    triples = []
    for n in sorted(names):
        b = names[n].encode("utf-8")
        triples.append((n, len(blob), len(b)))
        blob += b

    with open(out, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<6I", len(tc4), len(tc6), len(ta4), len(ta6), len(triples), len(blob)))
        f.write(b"".join(struct.pack("<I", s) for s, _ in tc4))
        f.write(b"".join(v for _, v in tc4))
        f.write(b"".join(s.to_bytes(16, "little") for s, _ in tc6))
        f.write(b"".join(v for _, v in tc6))
        f.write(b"".join(struct.pack("<I", s) for s, _ in ta4))
        f.write(b"".join(struct.pack("<I", v) for _, v in ta4))
        f.write(b"".join(s.to_bytes(16, "little") for s, _ in ta6))
        f.write(b"".join(struct.pack("<I", v) for _, v in ta6))
        f.write(b"".join(struct.pack("<3I", *t) for t in triples))
        f.write(bytes(blob))
    print(f"geo-convert: country {len(tc4)} v4 + {len(tc6)} v6 ranges, ASN {len(ta4)} v4 + {len(ta6)} v6 ranges, "
          f"{len(triples)} AS names -> {out}")


if __name__ == "__main__":
    main()
