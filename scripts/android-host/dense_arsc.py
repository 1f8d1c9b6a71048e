#!/usr/bin/env python3
"""Rewrites an Android 14+ resources.arsc into the classic dense layout older aapt2 builds read.

Debian's aapt2 (Android 10) rejects the API-36 framework table that ships in Robolectric's
android-all jar ("entry offsets overlap actual entry data"): newer tables use 16-bit entry
offsets (FLAG_OFFSET16), sparse type chunks (FLAG_SPARSE) and compact entries (FLAG_COMPACT).
This rewrites every type chunk with 32-bit offsets, one slot per entry of its type spec, and
full entries; no key, value, flag or configuration changes. Other chunks are copied as they are.

Usage: dense_arsc.py IN.arsc OUT.arsc
"""

import struct
import sys

RES_TABLE = 0x0002
RES_TABLE_PACKAGE = 0x0200
RES_TABLE_TYPE = 0x0201
RES_TABLE_TYPE_SPEC = 0x0202

FLAG_SPARSE = 0x01
FLAG_OFFSET16 = 0x02
ENTRY_FLAG_COMPLEX = 0x0001
ENTRY_FLAG_COMPACT = 0x0008
NO_ENTRY = 0xFFFFFFFF


class BadTable(Exception):
    pass


def chunk_header(data, at):
    if at + 8 > len(data):
        raise BadTable(f"chunk header at {at} past the end ({len(data)} bytes)")
    kind, header_size, size = struct.unpack_from("<HHI", data, at)
    if size < header_size or at + size > len(data):
        raise BadTable(f"chunk 0x{kind:04x} at {at}: size {size} does not fit")
    return kind, header_size, size


def entry_bytes(data, at):
    """One entry at `at`, as a full (non-compact) entry with its value or map."""
    size, flags = struct.unpack_from("<HH", data, at)
    if flags & ENTRY_FLAG_COMPACT:
        key = size  # a compact entry keeps the key index in its first field
        value_type = flags >> 8
        (value,) = struct.unpack_from("<I", data, at + 4)
        full_flags = flags & 0x00FF & ~ENTRY_FLAG_COMPACT
        return struct.pack("<HHI", 8, full_flags, key) + struct.pack("<HBBI", 8, 0, value_type, value)
    if flags & ENTRY_FLAG_COMPLEX:
        (count,) = struct.unpack_from("<I", data, at + 12)
        return data[at : at + size + 12 * count]
    (value_size,) = struct.unpack_from("<H", data, at + size)
    return data[at : at + size + value_size]


def dense_type(data, at, header_size, spec_counts, stats):
    type_id, flags, _reserved, count, entries_start = struct.unpack_from("<BBHII", data, at + 8)
    offsets_at = at + header_size
    slots = spec_counts.get(type_id)
    if slots is None:
        raise BadTable(f"type chunk at {at} (type {type_id}) before its type spec")
    by_index = {}
    if flags & FLAG_SPARSE:
        stats["sparse"] += 1
        for i in range(count):
            index, offset = struct.unpack_from("<HH", data, offsets_at + 4 * i)
            by_index[index] = offset * 4
    elif flags & FLAG_OFFSET16:
        stats["offset16"] += 1
        for i in range(count):
            (offset,) = struct.unpack_from("<H", data, offsets_at + 2 * i)
            if offset != 0xFFFF:
                by_index[i] = offset * 4
    else:
        for i in range(count):
            (offset,) = struct.unpack_from("<I", data, offsets_at + 4 * i)
            if offset != NO_ENTRY:
                by_index[i] = offset
    offsets = []
    body = bytearray()
    for index in range(slots):
        if index not in by_index:
            offsets.append(NO_ENTRY)
            continue
        entry_at = at + entries_start + by_index[index]
        if struct.unpack_from("<H", data, entry_at + 2)[0] & ENTRY_FLAG_COMPACT:
            stats["compact"] += 1
        offsets.append(len(body))
        body += entry_bytes(data, entry_at)
    header = bytearray(data[at : at + header_size])
    new_start = header_size + 4 * slots
    struct.pack_into("<HHI", header, 0, RES_TABLE_TYPE, header_size, new_start + len(body))
    struct.pack_into("<BBHII", header, 8, type_id, flags & ~(FLAG_SPARSE | FLAG_OFFSET16), 0, slots, new_start)
    return bytes(header) + struct.pack(f"<{slots}I", *offsets) + bytes(body)


def dense_package(data, at, header_size, size, stats):
    out = bytearray(data[at : at + header_size])
    spec_counts = {}
    pos = at + header_size
    end = at + size
    while pos < end:
        kind, child_header, child_size = chunk_header(data, pos)
        if kind == RES_TABLE_TYPE_SPEC:
            type_id = data[pos + 8]
            (spec_counts[type_id],) = struct.unpack_from("<I", data, pos + 12)
            out += data[pos : pos + child_size]
        elif kind == RES_TABLE_TYPE:
            out += dense_type(data, pos, child_header, spec_counts, stats)
        else:
            out += data[pos : pos + child_size]
        pos += child_size
    struct.pack_into("<I", out, 4, len(out))
    return bytes(out)


def dense_table(data):
    stats = {"sparse": 0, "offset16": 0, "compact": 0}
    kind, header_size, size = chunk_header(data, 0)
    if kind != RES_TABLE:
        raise BadTable(f"not a resource table (chunk 0x{kind:04x})")
    out = bytearray(data[:header_size])
    pos = header_size
    while pos < size:
        kind, child_header, child_size = chunk_header(data, pos)
        if kind == RES_TABLE_PACKAGE:
            out += dense_package(data, pos, child_header, child_size, stats)
        else:
            out += data[pos : pos + child_size]
        pos += child_size
    struct.pack_into("<I", out, 4, len(out))
    return bytes(out), stats


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    with open(source, "rb") as f:
        data = f.read()
    try:
        dense, stats = dense_table(data)
    except (BadTable, struct.error) as e:
        sys.exit(f"{source}: {e}")
    with open(target, "wb") as f:
        f.write(dense)
    print(
        f"{source}: {stats['offset16']} offset16 and {stats['sparse']} sparse type chunks, "
        f"{stats['compact']} compact entries rewritten; {len(data)} -> {len(dense)} bytes"
    )


if __name__ == "__main__":
    main()
