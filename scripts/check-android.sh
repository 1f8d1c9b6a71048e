#!/usr/bin/env bash
# Verifies the Android side of PhoneHome on a Linux host without the Android SDK/NDK:
#   1. the core with its Android code paths type-checks for aarch64-linux-android;
#   2. the Rust tests of rust-core/src/android (live view, session, procfs, golden bytes);
#   3. every Kotlin file of android-app compiles against the Android framework (Robolectric's
#      android-all jar for the target API) and protobuf-javalite, all from Maven Central;
#   4. JVM tests load the host build of the same cdylib and drive it as the app does: a real TUN
#      in a network namespace, traffic from a client there, snapshots decoded in Kotlin, stop,
#      panics as exceptions, and Kotlin/Rust golden bytes.
# Needs: cargo + rustup, gcc-aarch64-linux-gnu, python3, a JDK 17, Maven, curl, iproute2, root
# (for the namespace part; without root those tests are skipped and the script says so).
# Usage: scripts/check-android.sh            (all steps)
#        SKIP_ANDROID_CHECK=1 scripts/check-android.sh   (skip step 1)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOST="$ROOT/scripts/android-host"
GEN="$HOST/target/generated-sources"
NS=phah$$            # the "phone": client apps + the core's tun
NS_NET=phan$$        # the "internet": a test server
TUN=phtun0
step() { printf '\n== %s\n' "$*"; }
pom_prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$HOST/pom.xml" | head -n1; }

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NS_NET" 2>/dev/null || true
}
trap cleanup EXIT

cd "$ROOT"

if [ "${SKIP_ANDROID_CHECK:-0}" != 1 ]; then
    step "1. cargo check --target aarch64-linux-android (features jni)"
    rustup target list --installed | grep -qx aarch64-linux-android || rustup target add aarch64-linux-android
    if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
        echo "aarch64-linux-gnu-gcc is missing: apt-get install -y gcc-aarch64-linux-gnu" >&2
        exit 1
    fi
    CC_aarch64_linux_android=aarch64-linux-gnu-gcc AR_aarch64_linux_android=aarch64-linux-gnu-ar \
        cargo check -p phonehome-core --target aarch64-linux-android --no-default-features --features jni
fi

step "2. Rust tests of the Android module (live view, session, procfs, golden bytes)"
cargo test -p phonehome-core --no-default-features --features proto --lib android::

step "3. host cdylib with the test hooks"
cargo build -p phonehome-core --no-default-features --features jni-test
LIB="$ROOT/target/debug/libphonehome.so"

step "4. generated sources: R.java, BuildConfig.java, protobuf-javalite classes"
rm -rf "$GEN" && mkdir -p "$GEN/r" "$GEN/proto" "$HOST/target/protoc"
python3 "$HOST/gen_r.py" "$ROOT/android-app" org.phonehome "$GEN/r"
VERSION_NAME=$(sed -n 's/.*versionName = "\(.*\)".*/\1/p' "$ROOT/android-app/build.gradle.kts" | head -n1)
cat > "$GEN/r/org/phonehome/BuildConfig.java" <<EOF
package org.phonehome;

/** Host stand-in for the BuildConfig the Android Gradle plugin generates. */
public final class BuildConfig {
  public static final boolean DEBUG = true;
  public static final String APPLICATION_ID = "org.phonehome";
  public static final String VERSION_NAME = "${VERSION_NAME:-0.0.0}";
}
EOF
PROTOBUF=$(pom_prop protobuf.version)
PROTOC="$HOST/target/protoc/protoc-$PROTOBUF-linux-x86_64.exe"
if [ ! -x "$PROTOC" ]; then
    mvn -q -B dependency:copy -f "$HOST/pom.xml" \
        -Dartifact="com.google.protobuf:protoc:$PROTOBUF:exe:linux-x86_64" \
        -DoutputDirectory="$HOST/target/protoc"
    chmod +x "$PROTOC"
fi
"$PROTOC" --java_out=lite:"$GEN/proto" -I "$ROOT/proto" "$ROOT/proto/phonehome.proto"

step "5. Kotlin compile against android-all + JVM tests with the host cdylib"
MVN=(mvn -B -ntp -f "$HOST/pom.xml" -Dphonehome.lib="$LIB")
# Everything but the capture runs here (and fetches what Maven needs: the namespace has no
# route to Maven Central); the capture test then runs offline inside the phone's namespace.
"${MVN[@]}" test -Dtest='!CaptureTest' -Dsurefire.failIfNoSpecifiedTests=false

step "6. capture through a real TUN in a network namespace"
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
