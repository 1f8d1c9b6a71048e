#!/usr/bin/env bash
# Verifies the Android side of PhoneHome on a Linux host without the Android SDK/NDK, with the
# real Android tools Debian and Maven Central have:
#   1. the core with its Android code paths type-checks for all three ABIs the APK ships;
#   2. the Rust tests of rust-core/src/android (live view, session, procfs, golden bytes);
#   4. aapt2 compiles and links res/ with the manifest as AGP merges it, against the API-36
#      framework table (from android-all), with manifest validation; R.java comes from that link;
#   6. every Kotlin file compiles against android-all; JVM tests drive the host build of the core;
#      Robolectric draws every screen with the linked resources (PNGs in target/android-shots/)
#      and runs the VpnService against a stand-in for the native library;
#   7. R8 shrinks the release build with proguard-rules.pro + aapt2's rules, and the dex keeps
#      everything the core reaches by name (read from the Rust sources and the built library);
#   8. an APK skeleton (no .so) is aligned, signed, verified and read back with aapt;
#   9. scripts/check-apk-16k.sh passes and fails on APKs built here;
#  10. a real TUN in a network namespace carries traffic through the core as the app drives it.
# Needs: what .ci/run installs (cargo + rustup targets, cross gcc, aapt/aapt2, zipalign,
# apksigner, dexdump, python3, JDK 17 + Temurin 25, Maven, iproute2) and root for step 10
# (without root it is skipped and the script says so).
# Usage: scripts/check-android.sh                 (all steps)
#        SKIP_ANDROID_CHECK=1 scripts/check-android.sh   (skip step 1)
#        ONLY=aapt2|r8|apk scripts/check-android.sh   (one step again, after a full run)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOST="$ROOT/scripts/android-host"
GEN="$HOST/target/generated-sources"
NS=phah$$            # the "phone": client apps + the core's tun
NS_NET=phan$$        # the "internet": a test server
TUN=phtun0
step() { printf '\n== %s\n' "$*"; }
die() { echo "check-android: $*" >&2; exit 1; }
pom_prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$HOST/pom.xml" | head -n1; }
# ONLY=aapt2 / ONLY=r8 re-run one step on the files below, which the planted-fault test
# (scripts/android-host/test-check-fails.sh) points at modified copies.
ONLY=${ONLY:-all}
RES=${ANDROID_RES:-$ROOT/android-app/src/main/res}
RULES=${ANDROID_RULES:-$ROOT/android-app/proguard-rules.pro}
AAPT=${AAPT_OUT:-$HOST/target/aapt}
DEX=${DEX_OUT:-$HOST/target/dex}
LIB="$ROOT/target/debug/libphonehome.so"
# The tests' JVM: android-all 16 is class-file version 65, so JDK 21+ (these machines carry
# Temurin 25 beside Debian's JDK 17, which compiles).
TEST_JVM=${TEST_JVM:-}
if [ -z "$TEST_JVM" ]; then
    for java in /usr/lib/jvm/*/bin/java; do
        major=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
        if [ "${major:-0}" -ge 21 ] 2>/dev/null; then TEST_JVM=$java; break; fi
    done
fi
[ -n "$TEST_JVM" ] || die "no JDK 21+ under /usr/lib/jvm for the Robolectric tests (set TEST_JVM)"
MVN=(mvn -B -ntp -f "$HOST/pom.xml" -Dphonehome.lib="$LIB" -Dtest.jvm="$TEST_JVM")

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NS_NET" 2>/dev/null || true
}
trap cleanup EXIT

cd "$ROOT"

ABIS=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)
# The C compiler each ABI's bundled SQLite is checked with (the NDK's clang is out of reach; a
# compiler for the same architecture type-checks the same Rust).
declare -A CROSS_CC=([aarch64-linux-android]=aarch64-linux-gnu-gcc
    [armv7-linux-androideabi]=arm-linux-gnueabihf-gcc [x86_64-linux-android]=gcc)

if [ "$ONLY" = all ] && [ "${SKIP_ANDROID_CHECK:-0}" != 1 ]; then
    step "1. cargo check --target ${ABIS[*]} (features jni)"
    T0=$SECONDS
    # One cargo invocation for the three ABIs: it builds the host build scripts and proc macros
    # once and keeps both cores busy across the three crate graphs.
    TARGET_ARGS=()
    TARGET_ENV=(LIBSQLITE3_FLAGS=-DLONGDOUBLE_TYPE=double)
    for abi in "${ABIS[@]}"; do
        rustup target list --installed | grep -qx "$abi" || rustup target add "$abi"
        cc=${CROSS_CC[$abi]}
        command -v "$cc" >/dev/null || die "$cc is missing (.ci/run installs it)"
        var=${abi//-/_}
        # SQLite's long double pulls __extenddftf2 into x86_64 builds (rusqlite#1380): as the
        # Gradle build does, compile it with plain doubles (LIBSQLITE3_FLAGS above).
        # cc-rs asks for -mfloat-abi=softfp on armv7 Android, which Debian's armhf headers refuse;
        # this only type-checks (nothing is linked), so the hard-float headers serve.
        cflags=
        [ "$abi" = armv7-linux-androideabi ] && cflags=-mfloat-abi=hard
        TARGET_ENV+=("CC_$var=$cc" "AR_$var=${cc%gcc}ar" "CFLAGS_$var=$cflags")
        TARGET_ARGS+=(--target "$abi")
    done
    env "${TARGET_ENV[@]}" cargo check -p phonehome-core "${TARGET_ARGS[@]}" --no-default-features --features jni
    echo "cargo check, ${#ABIS[@]} ABIs: $((SECONDS - T0)) s"
fi

if [ "$ONLY" = all ]; then
    step "2. Rust tests of the Android module (live view, session, procfs, golden bytes)"
    cargo test -p phonehome-core --no-default-features --features proto --lib android::

    step "3. host cdylib with the test hooks"
    cargo build -p phonehome-core --no-default-features --features jni-test
fi

TESTS_FAILED=
TOOLS="$HOST/target/tools"
mkdir -p "$TOOLS"
fetch() { # fetch group:artifact:version[:type] FILE: into $TOOLS once (Maven caches downloads)
    if [ ! -f "$TOOLS/$2" ]; then
        mvn -q -B -ntp dependency:copy -f "$HOST/pom.xml" -Dartifact="$1" -DoutputDirectory="$TOOLS" \
            -Dmdep.stripVersion=true >/dev/null || die "cannot fetch $1 from Maven Central"
        [ -f "$TOOLS/$2" ] || die "fetched $1 but found no $TOOLS/$2"
    fi
    echo "$TOOLS/$2"
}
ANDROID_ALL=$(fetch "org.robolectric:android-all:$(pom_prop android.all.version)" android-all.jar)

if [ "$ONLY" = all ] || [ "$ONLY" = aapt2 ]; then
    step "4. aapt2: compile and link res/ with the merged manifest against the API-36 framework"
    T0=$SECONDS
    FW="$HOST/target/framework"
    if [ ! -f "$FW/android-36.apk" ] || [ "$FW/android-36.apk" -ot "$ANDROID_ALL" ]; then
        rm -rf "$FW" && mkdir -p "$FW/apk"
        unzip -q -o "$ANDROID_ALL" AndroidManifest.xml resources.arsc -d "$FW"
        # Debian's aapt2 reads only the dense pre-Android-14 table layout.
        python3 "$HOST/dense_arsc.py" "$FW/resources.arsc" "$FW/apk/resources.arsc"
        cp "$FW/AndroidManifest.xml" "$FW/apk/"
        (cd "$FW/apk" && zip -q -0 ../android-36.apk AndroidManifest.xml resources.arsc)
        rm -rf "$FW/apk" "$FW/resources.arsc" "$FW/AndroidManifest.xml"
    fi
    rm -rf "$AAPT" && mkdir -p "$AAPT/compiled" "$AAPT/gen" "$AAPT/assets"
    eval "$(python3 "$HOST/merge_manifest.py" "$ROOT" "$AAPT/AndroidManifest.xml")"
    aapt2 compile --dir "$RES" -o "$AAPT/compiled/res.zip" 2>&1 | tee "$AAPT/compile.log"
    [ -f "$AAPT/compiled/res.zip" ] || die "aapt2 compile failed on $RES (see above)"
    # --warn-manifest-validation: aapt2 2.19 predates the API-34 <property> element, which it
    # then reports as a warning; every other manifest or resource problem stays an error.
    aapt2 link -o "$AAPT/app.ap_" -I "$FW/android-36.apk" --manifest "$AAPT/AndroidManifest.xml" \
        --java "$AAPT/gen" --proguard "$AAPT/aapt-rules.pro" --warn-manifest-validation \
        --auto-add-overlay "$AAPT/compiled/res.zip" 2>&1 | grep -v "Unknown chunk type" | tee "$AAPT/link.log" || true
    [ -f "$AAPT/app.ap_" ] || die "aapt2 link failed for $RES (see above)"
    if grep -v "unexpected element <property>" "$AAPT/link.log" | grep -qi "warn\|error"; then
        die "aapt2 link warned about more than the API-34 <property> element (see above)"
    fi
    echo "aapt2: $(unzip -l "$AAPT/app.ap_" | tail -n1 | awk '{print $2}') files linked, $(grep -c 'public static final int' "$AAPT/gen/org/phonehome/R.java") R fields ($((SECONDS - T0)) s)"
fi
[ "$ONLY" = aapt2 ] && exit 0
eval "$(python3 "$HOST/merge_manifest.py" "$ROOT" /dev/null)"

if [ "$ONLY" = all ]; then
    step "5. generated sources: R.java (aapt2), BuildConfig.java, protobuf-javalite classes"
    rm -rf "$GEN" && mkdir -p "$GEN/r/org/phonehome" "$GEN/proto" "$HOST/target/protoc"
    cp "$AAPT/gen/org/phonehome/R.java" "$GEN/r/org/phonehome/"
    cat > "$GEN/r/org/phonehome/BuildConfig.java" <<JAVA
package org.phonehome;

/** Host stand-in for the BuildConfig the Android Gradle plugin generates. */
public final class BuildConfig {
  public static final boolean DEBUG = true;
  public static final String APPLICATION_ID = "$NAMESPACE";
  public static final String VERSION_NAME = "$VERSIONNAME";
}
JAVA
    PROTOBUF=$(pom_prop protobuf.version)
    PROTOC="$HOST/target/protoc/protoc-$PROTOBUF-linux-x86_64.exe"
    if [ ! -x "$PROTOC" ]; then
        mvn -q -B dependency:copy -f "$HOST/pom.xml" \
            -Dartifact="com.google.protobuf:protoc:$PROTOBUF:exe:linux-x86_64" \
            -DoutputDirectory="$HOST/target/protoc"
        chmod +x "$PROTOC"
    fi
    "$PROTOC" --java_out=lite:"$GEN/proto" --descriptor_set_out="$HOST/target/phonehome.desc" \
        -I "$ROOT/proto" "$ROOT/proto/phonehome.proto"

    # Robolectric: binary resources from the aapt2 link above; its AAR dependencies as jars.
    mkdir -p "$HOST/target/robolectric-config/com/android/tools" "$HOST/target/aar-jars"
    cat > "$HOST/target/robolectric-config/com/android/tools/test_config.properties" <<PROPS
android_merged_manifest=$AAPT/AndroidManifest.xml
android_merged_assets=$AAPT/assets
android_resource_apk=$AAPT/app.ap_
android_custom_package=$NAMESPACE
PROPS
    for aar in androidx.test:monitor:1.8.0 androidx.test.espresso:espresso-idling-resource:3.7.0 \
        androidx.tracing:tracing:1.1.0; do
        name=$(echo "$aar" | cut -d: -f2)
        if [ ! -s "$HOST/target/aar-jars/$name.jar" ]; then
            unzip -q -p "$(fetch "$aar:aar" "$name.aar")" classes.jar > "$HOST/target/aar-jars/$name.jar"
        fi
    done

    step "6. Kotlin compile against android-all; JVM tests with the host cdylib; Robolectric"
    rm -rf "$ROOT/target/android-shots" && mkdir -p "$ROOT/target/android-shots"
    T0=$SECONDS
    # Everything but the capture runs here (and fetches what Maven needs: the namespace has no
    # route to Maven Central); the capture test then runs offline inside the phone's namespace.
    # A test failure here does not stop the steps after it (R8, APK, 16 KB, capture): they check
    # other things; the script still fails at the end.
    "${MVN[@]}" test -Dtest='!CaptureTest' -Dsurefire.failIfNoSpecifiedTests=false -Dmaven.test.failure.ignore=true \
        | tee "$HOST/target/maven-test.log"
    [ "${PIPESTATUS[0]}" = 0 ] || die "Maven failed before or while running the tests (see above)"
    if grep -Eq "Tests run: [0-9]+, (Failures: [1-9]|Failures: [0-9]+, Errors: [1-9])" "$HOST/target/maven-test.log"; then
        TESTS_FAILED="JVM/Robolectric tests of step 6"
    fi
    echo "Maven compile + tests: $((SECONDS - T0)) s; $(ls "$ROOT/target/android-shots" | wc -l) screenshots in target/android-shots/"
fi

if [ "$ONLY" = all ] || [ "$ONLY" = r8 ]; then
    step "7. R8 (release) with proguard-rules.pro + aapt2's rules; the JNI surface in the dex"
    T0=$SECONDS
    [ -d "$HOST/target/classes/org/phonehome" ] || die "no compiled classes: run scripts/check-android.sh in full first"
    R8=$(fetch "com.android.tools:r8:$(pom_prop r8.version)" r8.jar)
    JB_ANNOTATIONS=$(fetch org.jetbrains:annotations:26.0.2 annotations.jar)
    STDLIB=$(fetch "org.jetbrains.kotlin:kotlin-stdlib:$(pom_prop kotlin.version)" kotlin-stdlib.jar)
    JAVALITE=$(fetch "com.google.protobuf:protobuf-javalite:$(pom_prop protobuf.version)" protobuf-javalite.jar)
    JDK_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
    rm -rf "$DEX" && mkdir -p "$DEX/out"
    (cd "$HOST/target/classes" && zip -q -r "$DEX/app-classes.jar" . -i '*.class')  # R8 takes jars, not directories
    # AGP's default proguard-android-optimize.txt is in the SDK, out of reach; what it keeps for
    # this app (manifest entry points) aapt2's rules keep here.
    java -Xmx2g -cp "$R8" com.android.tools.r8.R8 --release --min-api "$MINSDK" \
        --lib "$JDK_HOME" --lib "$ANDROID_ALL" --classpath "$JB_ANNOTATIONS" \
        --pg-conf "$RULES" --pg-conf "$AAPT/aapt-rules.pro" \
        --pg-map-output "$DEX/mapping.txt" --output "$DEX/out" \
        "$DEX/app-classes.jar" "$STDLIB" "$JAVALITE" 2>&1 | tee "$DEX/r8.log" | grep -v "Missing class" || true
    [ -f "$DEX/out/classes.dex" ] || die "R8 produced no classes.dex (see above)"
    dexdump "$DEX/out/classes.dex" > "$DEX/dexdump.txt" 2>/dev/null
    LIB_ARG=()
    if [ -f "$LIB" ]; then LIB_ARG=("$LIB"); fi
    python3 "$HOST/check_dex.py" "$DEX/dexdump.txt" "$ROOT/rust-core/src/android" \
        "$HOST/target/phonehome.desc" "${LIB_ARG[@]}" || die "the R8 output with $RULES breaks the JNI contract (see above)"
    echo "R8: classes.dex $(stat -c %s "$DEX/out/classes.dex") bytes, $(grep -c 'Class descriptor' "$DEX/dexdump.txt") classes ($((SECONDS - T0)) s)"
fi
[ "$ONLY" = r8 ] && exit 0

[ "$ONLY" = all ] || [ "$ONLY" = apk ] || die "ONLY=$ONLY: expected aapt2, r8 or apk"
step "8. APK skeleton: aapt2 output + classes.dex, zipalign, apksigner, aapt dump badging"
APK="$HOST/target/apk"
rm -rf "$APK" && mkdir -p "$APK/tree"
(cd "$APK/tree" && unzip -q "$AAPT/app.ap_" && cp "$DEX/out/classes.dex" . && zip -q -r -0 ../unaligned.apk .)
zipalign -f -p 4 "$APK/unaligned.apk" "$APK/aligned.apk"
keytool -genkeypair -keystore "$APK/test.jks" -storepass android -keypass android -alias test \
    -keyalg RSA -keysize 2048 -validity 1 -dname CN=phonehome-host-check >/dev/null 2>&1
apksigner sign --ks "$APK/test.jks" --ks-pass pass:android --key-pass pass:android \
    --min-sdk-version "$MINSDK" --out "$APK/phonehome.apk" "$APK/aligned.apk"
apksigner verify --verbose "$APK/phonehome.apk" > "$APK/verify.txt"
sed -n 1,4p "$APK/verify.txt"
grep -q "Verified using v2 scheme (APK Signature Scheme v2): true" "$APK/verify.txt" || die "apksigner: no v2 signature on $APK/phonehome.apk"
aapt dump badging "$APK/phonehome.apk" > "$APK/badging.txt" 2>/dev/null
python3 "$HOST/check_badging.py" "$APK/badging.txt" "$AAPT/AndroidManifest.xml" "$RES" ||
    die "aapt dump badging of $APK/phonehome.apk disagrees with the build (see above)"

step "9. scripts/check-apk-16k.py fails and passes on APKs built here"
bash "$HOST/test-apk-16k.sh"

step "10. capture through a real TUN in a network namespace"
if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && command -v ip >/dev/null; then
    # The phone: a TUN that routes everything (like VpnService's 0.0.0.0/0), and a veth to the
    # internet for the core's own sockets, which carry SO_MARK 0x50 and so bypass the tunnel
    # (Android excludes the app from its VPN instead).
    ip netns add "$NS"
    ip netns add "$NS_NET"
    ip link add phveth0 netns "$NS" type veth peer name phveth1 netns "$NS_NET"
    ip -n "$NS" link set lo up
    ip -n "$NS_NET" link set lo up
    ip -n "$NS" addr add 198.18.255.1/30 dev phveth0
    ip -n "$NS_NET" addr add 198.18.255.2/30 dev phveth1
    ip -n "$NS_NET" addr add 198.19.0.1/32 dev lo
    ip -n "$NS" link set phveth0 up
    ip -n "$NS_NET" link set phveth1 up
    ip -n "$NS_NET" route add 198.18.0.0/30 via 198.18.255.1
    ip -n "$NS" tuntap add dev "$TUN" mode tun
    ip -n "$NS" addr add 198.18.0.1/30 dev "$TUN"
    ip -n "$NS" link set "$TUN" mtu 9000 up
    ip -n "$NS" route add default dev "$TUN"
    ip -n "$NS" route add default via 198.18.255.2 table 80
    ip -n "$NS" rule add fwmark 0x50 lookup 80
    # The test server on the internet side: a fixed-size HTTP reply.
    mkdir -p "$HOST/target/www"
    head -c 65536 /dev/zero | tr '\0' 'x' > "$HOST/target/www/blob"
    ip netns exec "$NS_NET" timeout 600 python3 -m http.server 8080 --bind 198.19.0.1 \
        --directory "$HOST/target/www" >/dev/null 2>&1 &
    SERVER_PID=$!
    # Classes were compiled in step 5; only the tests run here.
    ip netns exec "$NS" "${MVN[@]}" -o -Dphonehome.tun="$TUN" surefire:test -Dtest=CaptureTest \
        -Dsurefire.failIfNoSpecifiedTests=false
else
    echo "SKIPPED: the capture test needs root and /dev/net/tun"
fi

[ -z "$TESTS_FAILED" ] || die "$TESTS_FAILED failed (see the Surefire summary above)"
