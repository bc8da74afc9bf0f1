#!/usr/bin/env python3
"""Builds the GeoIP tables embedded into sikker from the ip-location-db CSVs.

Run at development time only (the server never parses a CSV):

    python3 geoip/build.py            # fetches the npm packages with `npm pack`
    python3 geoip/build.py --from DIR # DIR holds the unpacked packages

Writes geoip/country.bin and geoip/asn.bin. Both use one format, read by
src/geoip/table.rs (integers little-endian; varint = LEB128):

    magic    8 bytes  b"SKGEOTB1"
    kind     u8       1 = country, 2 = asn
    date     10 bytes ASCII YYYY-MM-DD (the data's date)
    source   u16 length + UTF-8 (package names and versions)
    nvalues  u32, then the values:
               country: 2 ASCII bytes (ISO code) + u8 length + UTF-8 name
               asn:     u32 AS number + u16 length + UTF-8 organisation
    then twice, for IPv4 (32-bit) and IPv6 (128-bit) addresses:
    n        u32, then n entries, each
               u8 tz, varint d: the start is the previous start + (d << tz)
                                (the first entry's previous start is 0)
               varint v:        0 = no data, else the value index + 1

A range runs from its start to the next start minus one (the last to the top
of the address space). Adjacent ranges with equal values are merged; where
source rows overlap, the first one wins. Delta coding keeps the files at
about a third of a fixed-width layout, and decoding them is one pass.
"""

import argparse
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

GAP = -1
PACKAGES = {
    "country": "@ip-location-db/geo-whois-asn-country",
    "asn": "@ip-location-db/asn",
    "names": "countries-list",
}


def fetch(tmp):
    """npm pack each package into tmp and unpack it; returns {key: dir}."""
    dirs = {}
    for key, pkg in PACKAGES.items():
        out = subprocess.run(
            ["npm", "pack", pkg, "--pack-destination", tmp],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        d = os.path.join(tmp, key)
        os.makedirs(d)
        subprocess.run(["tar", "xzf", os.path.join(tmp, out), "-C", d], check=True)
        dirs[key] = os.path.join(d, "package")
    return dirs


def version(pkg_dir):
    with open(os.path.join(pkg_dir, "package.json"), encoding="utf-8") as f:
        p = json.load(f)
    return p["name"], p["version"]


def data_date(ver):
    # ip-location-db versions are 2.3.YYYYMMDDHH.
    stamp = ver.split(".")[2]
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}"


def read_ranges(path, value_of):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            yield int(row[0]), int(row[1]), value_of(row)


def table(ranges, top):
    """(start, end, value) sorted → merged [(start, value)] with gap markers."""
    out = []
    nxt = 0  # first address not yet covered

    def put(start, v):
        # Contiguous entries with equal values merge into one.
        if not out or out[-1][1] != v:
            out.append((start, v))

    for lo, hi, v in sorted(ranges):
        if hi < nxt:
            continue  # overlapping rows: the first one wins
        lo = max(lo, nxt)
        if lo > nxt:
            put(nxt, GAP)
        put(lo, v)
        nxt = hi + 1
    if nxt <= top:
        put(nxt, GAP)
    return out


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def entries(t):
    out = bytearray(struct.pack("<I", len(t)))
    prev = 0
    for start, v in t:
        d = start - prev
        tz = (d & -d).bit_length() - 1 if d else 0
        out += struct.pack("<B", tz) + varint(d >> tz) + varint(v + 1)
        prev = start
    return bytes(out)


def write(path, kind, date, source, values_blob, nvalues, t4, t6):
    with open(path, "wb") as f:
        f.write(b"SKGEOTB1")
        f.write(struct.pack("<B", kind))
        f.write(date.encode("ascii"))
        src = source.encode("utf-8")
        f.write(struct.pack("<H", len(src)) + src)
        f.write(struct.pack("<I", nvalues))
        f.write(values_blob)
        f.write(entries(t4))
        f.write(entries(t6))
    print(f"{path}: {nvalues} values, {len(t4)} IPv4 and {len(t6)} IPv6 ranges, "
          f"{os.path.getsize(path)} bytes")


def build_country(dirs, out):
    with open(os.path.join(dirs["names"], "countries.min.json"), encoding="utf-8") as f:
        names = {k: v["name"] for k, v in json.load(f).items()}
    codes = {}
    blob = bytearray()

    def value_of(row):
        code = row[2].strip().upper()
        if len(code) != 2 or not code.isascii() or not code.isalpha():
            sys.exit(f"bad country code {row!r}")
        if code not in codes:
            codes[code] = len(codes)
            name = names.get(code, "").encode("utf-8")
            blob.extend(code.encode("ascii") + struct.pack("<B", len(name)) + name)
        return codes[code]

    base = os.path.join(dirs["country"], "geo-whois-asn-country-ipv")
    t4 = table(read_ranges(base + "4-num.csv", value_of), (1 << 32) - 1)
    t6 = table(read_ranges(base + "6-num.csv", value_of), (1 << 128) - 1)
    name, ver = version(dirs["country"])
    nname, nver = version(dirs["names"])
    write(out, 1, data_date(ver), f"{name}@{ver}; names: {nname}@{nver}",
          bytes(blob), len(codes), t4, t6)


def build_asn(dirs, out):
    ids = {}
    blob = bytearray()

    def value_of(row):
        key = (int(row[2]), row[3].strip())
        if key not in ids:
            ids[key] = len(ids)
            org = key[1].encode("utf-8")[:65535]
            blob.extend(struct.pack("<IH", key[0], len(org)) + org)
        return ids[key]

    base = os.path.join(dirs["asn"], "asn-ipv")
    t4 = table(read_ranges(base + "4-num.csv", value_of), (1 << 32) - 1)
    t6 = table(read_ranges(base + "6-num.csv", value_of), (1 << 128) - 1)
    name, ver = version(dirs["asn"])
    write(out, 2, data_date(ver), f"{name}@{ver}", bytes(blob), len(ids), t4, t6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="src", help="directory with country/, asn/, names/ package dirs")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        if args.src:
            dirs = {k: os.path.join(args.src, k, "package") for k in PACKAGES}
        else:
            dirs = fetch(tmp)
        build_country(dirs, os.path.join(here, "country.bin"))
        build_asn(dirs, os.path.join(here, "asn.bin"))


if __name__ == "__main__":
    main()
