#!/usr/bin/env bash
# The checks of scripts/check-android.sh can fail: plant a fault in a copy of the inputs, run the
# step again on the copy, and require a failure that names the problem.
#   1. an unknown attribute in a copy of a layout   -> step 4 (aapt2 link) fails naming it;
#   2. a keep rule missing from a copy of the rules -> step 7 (R8 + check_dex.py) fails naming
#      the JNI method the core can no longer find.
# Runs after a full scripts/check-android.sh (it reuses the compiled classes and the framework).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W="$ROOT/scripts/android-host/target/planted"
rm -rf "$W" && mkdir -p "$W"
passed=0

expect_failure() { # NAME WORDS-THE-ERROR-MUST-SAY ENV...
    local name=$1 words=$2
    shift 2
    if env "$@" bash "$ROOT/scripts/check-android.sh" > "$W/$name.log" 2>&1; then
        echo "planted fault '$name' passed check-android.sh: the check cannot fail" >&2
        tail -n 20 "$W/$name.log" >&2
        exit 1
    fi
    if ! grep -q -- "$words" "$W/$name.log"; then
        echo "check-android.sh failed on '$name' without naming it ('$words'):" >&2
        tail -n 20 "$W/$name.log" >&2
        exit 1
    fi
    echo "planted fault '$name': check-android.sh fails, saying: $(grep -m1 -- "$words" "$W/$name.log")"
    passed=$((passed + 1))
}

# 1. An attribute the framework does not have, in a copy of res/.
cp -r "$ROOT/android-app/src/main/res" "$W/res"
layout="$W/res/layout/activity_live.xml"
grep -q 'android:id="@+id/status"' "$layout" || { echo "activity_live.xml has no @+id/status to plant next to" >&2; exit 1; }
sed -i 's|android:id="@+id/status"|android:id="@+id/status" android:textSizeBogus="12sp"|' "$layout"
expect_failure unknown-attribute "attribute android:textSizeBogus not found" \
    ONLY=aapt2 ANDROID_RES="$W/res" AAPT_OUT="$W/aapt"

# 2. proguard-rules.pro without the rule that keeps NativeCore's natives.
grep -q 'NativeCore { native <methods>; }' "$ROOT/android-app/proguard-rules.pro" ||
    { echo "proguard-rules.pro has no NativeCore keep rule to remove" >&2; exit 1; }
grep -v 'NativeCore { native <methods>; }' "$ROOT/android-app/proguard-rules.pro" > "$W/proguard-rules.pro"
expect_failure missing-keep-rule "NativeCore.start: the core exports" \
    ONLY=r8 ANDROID_RULES="$W/proguard-rules.pro" DEX_OUT="$W/dex"

echo "planted faults: $passed passed, 0 failed"
