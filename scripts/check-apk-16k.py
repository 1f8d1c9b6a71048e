#!/usr/bin/env python3
"""Checks that an APK's native libraries load on Android devices with 16 KB memory pages.

For every lib/<abi>/*.so in the APK:
- the entry is stored (not deflated) and its data starts at a file offset that is a multiple of
  16384, so the system can map it straight from the APK;
- every ELF PT_LOAD segment has p_align >= 16384 (linked with -z max-page-size=16384).
Exits 1 naming each library that fails, 2 when the APK is unreadable or has no native library.

Usage: scripts/check-apk-16k.py app.apk
"""

import struct
import sys
import zipfile

PAGE = 16384
PT_LOAD = 1


def local_data_offset(apk, info):
    """File offset of the entry's data: after its local header, whose extra field may differ."""
    apk.seek(info.header_offset)
    header = apk.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ValueError(f"{info.filename}: no local file header at {info.header_offset}")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return info.header_offset + 30 + name_len + extra_len


def load_alignments(elf, name):
    """p_align of every PT_LOAD segment of an ELF image."""
    if elf[:4] != b"\x7fELF" or len(elf) < 52:
        raise ValueError(f"{name}: not an ELF file")
    is64 = elf[4] == 2
    endian = "<" if elf[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(endian + "Q", elf, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 54)
    else:
        phoff, = struct.unpack_from(endian + "I", elf, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", elf, 42)
    aligns = []
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + phentsize > len(elf):
            raise ValueError(f"{name}: program header {i} past the end of the file")
        p_type, = struct.unpack_from(endian + "I", elf, at)
        if p_type != PT_LOAD:
            continue
        if is64:
            p_align, = struct.unpack_from(endian + "Q", elf, at + 48)
        else:
            p_align, = struct.unpack_from(endian + "I", elf, at + 28)
        aligns.append(p_align)
    if not aligns:
        raise ValueError(f"{name}: no PT_LOAD segment")
    return aligns


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        print(f"{path}: not a readable APK: {e}", file=sys.stderr)
        sys.exit(2)
    libs = [i for i in archive.infolist() if i.filename.startswith("lib/") and i.filename.endswith(".so")]
    if not libs:
        print(f"{path}: no lib/<abi>/*.so in this APK", file=sys.stderr)
        sys.exit(2)
    problems = []
    with open(path, "rb") as raw:
        for info in libs:
            name = info.filename
            try:
                if info.compress_type != zipfile.ZIP_STORED:
                    problems.append(f"{name}: compressed; must be stored (useLegacyPackaging = false)")
                else:
                    offset = local_data_offset(raw, info)
                    if offset % PAGE:
                        problems.append(f"{name}: data at offset {offset}, not a multiple of {PAGE} (zipalign -P 16)")
                small = [a for a in load_alignments(archive.read(name), name) if a < PAGE]
                if small:
                    problems.append(f"{name}: PT_LOAD aligned to {min(small)} < {PAGE} (link with -z max-page-size={PAGE})")
            except (ValueError, struct.error) as e:
                problems.append(str(e))
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{path}: {len(libs)} native libraries, all stored at 16 KB offsets with 16 KB-aligned segments")


if __name__ == "__main__":
    main()
