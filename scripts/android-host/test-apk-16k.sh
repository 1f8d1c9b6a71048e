#!/usr/bin/env bash
# scripts/check-apk-16k.py on APKs built here with a tiny .so: it must pass the one that is right
# (segments linked with -z max-page-size=16384, stored at a 16 KB offset) and fail, naming the
# problem, each of: 4 KB segments, a stored .so at a 4 KB offset, a deflated .so.
set -euo pipefail
HOST=$(cd "$(dirname "$0")" && pwd)
CHECK="$HOST/../check-apk-16k.py"
W="$HOST/target/apk16k"
rm -rf "$W" && mkdir -p "$W"
echo 'int phonehome_probe(void) { return 16; }' > "$W/probe.c"
gcc -shared -fPIC -Wl,-z,max-page-size=16384 -o "$W/good.so" "$W/probe.c"
gcc -shared -fPIC -Wl,-z,max-page-size=4096 -Wl,-z,common-page-size=4096 -o "$W/small.so" "$W/probe.c"

# zip an APK with lib/x86_64/libphonehome.so padded (extra field) to start at a multiple of ALIGN.
make_apk() { # OUT SO ALIGN STORED(1/0)
    python3 - "$@" <<'PY'
import sys, zipfile
out, so, align, stored = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
with zipfile.ZipFile(out, "w") as z:
    z.writestr("AndroidManifest.xml", b"\0" * 1000)
    name = "lib/x86_64/libphonehome.so"
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    start = z.fp.tell() + 30 + len(name)
    pad = (-start - 4) % align  # a 4-byte extra header (id 0xd935, as zipalign -P uses) + padding
    if pad % align == 0 and start % align == 0:
        pad = align - 4
    info.extra = b"\x35\xd9" + pad.to_bytes(2, "little") + b"\0" * pad
    z.writestr(info, open(so, "rb").read())
PY
}
make_apk "$W/good.apk" "$W/good.so" 16384 1
make_apk "$W/small-segments.apk" "$W/small.so" 16384 1
make_apk "$W/4k-offset.apk" "$W/good.so" 4096 1
make_apk "$W/deflated.apk" "$W/good.so" 16384 0
python3 "$CHECK" "$W/good.apk"
expect_fail() { # APK WORDS-THE-ERROR-MUST-SAY
    local out
    if out=$(python3 "$CHECK" "$1" 2>&1); then
        echo "check-apk-16k.py passed $1, which is wrong: $2" >&2
        exit 1
    fi
    grep -q "$2" <<<"$out" || { echo "check-apk-16k.py failed $1 without saying '$2': $out" >&2; exit 1; }
    echo "fails as it must: $out"
}
expect_fail "$W/small-segments.apk" "PT_LOAD aligned to 4096"
if python3 -c "
import sys, zipfile, struct
z = zipfile.ZipFile(sys.argv[1]); i = z.getinfo('lib/x86_64/libphonehome.so')
f = open(sys.argv[1], 'rb'); f.seek(i.header_offset + 26); n, e = struct.unpack('<HH', f.read(4))
sys.exit(0 if (i.header_offset + 30 + n + e) % 16384 else 1)" "$W/4k-offset.apk"; then
    expect_fail "$W/4k-offset.apk" "not a multiple of 16384"
else
    echo "the 4 KB APK happened to be 16 KB aligned: rebuild with another manifest size" >&2
    exit 1
fi
expect_fail "$W/deflated.apk" "compressed; must be stored"
echo "check-apk-16k: 4 passed, 0 failed"
