#!/usr/bin/env bash
# Where a new connection's CPU goes (a measurement, not a test): `phonehome capture` under
# valgrind's callgrind, which counts instructions (repeatable whatever else the machine does;
# this machine has no perf counters). Counting starts once the capture is up and stops after
# BENCH_CONNS new TCP connections (or UDP flows / DNS queries, PROFILE_KIND=udpflows|dns), so
# startup is not counted; the report gives instructions per connection, per thread, and the
# functions with the most inclusive instructions per connection. Kernel work is not counted
# there: PROFILE_TOOL=strace counts the capture's system calls per connection instead (strace
# attached to every thread for the same window), and its minor page faults.
#
# Usage: sudo scripts/profile-connections.sh   (BENCH_CONNS=200, PROFILE_KIND=conns,
#                                               PROFILE_TOOL=callgrind|strace,
#                                               PHONEHOME=path, BENCH_KEEP=1 keeps the files)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/bench_tools.py"
SERVER=198.18.0.1
N=${BENCH_CONNS:-200}
KIND=${PROFILE_KIND:-conns}
TOOL=${PROFILE_TOOL:-callgrind}
PH=${PHONEHOME:-$ROOT/target/release/phonehome}
wait_for() { for _ in $(seq 6000); do grep -qs "$2" "$1" && return 0; sleep 0.05; done; return 1; }

if [ "${1:-}" = "--inner" ]; then
    prefix=$2
    # A first exchange so every lazily built table (and the first app name) is in place.
    python3 "$TOOLS" conns $SERVER 7 3 > /dev/null
    python3 "$TOOLS" udpflows $SERVER 7 3 > /dev/null
    python3 "$TOOLS" dns "$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)" 3 > /dev/null
    echo ready > "$prefix.ready"
    wait_for "$prefix.go" go
    case $KIND in
        dns) python3 "$TOOLS" dns "$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)" "$N" ;;
        *) python3 "$TOOLS" "$KIND" $SERVER 7 "$N" ;;
    esac > "$prefix.result.part"
    mv "$prefix.result.part" "$prefix.result"
    wait_for "$prefix.done" done
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "profile-connections: needs root (network namespaces)" >&2; exit 1; }
case $TOOL in
    callgrind) need=valgrind ;;
    strace) need=strace ;;
    *) echo "profile-connections: PROFILE_TOOL=$TOOL: expected callgrind or strace" >&2; exit 1 ;;
esac
command -v $need > /dev/null || { echo "profile-connections: $need not found" >&2; exit 1; }
. "$ROOT/scripts/bench-rig.sh"
bench_rig php$$
bench_echo_servers tcp:7 udp:7 udp:53
export N KIND

# One launch for both tools: callgrind wraps the capture (counting off until "go"); strace
# attaches to all its threads once it is up. Either way only the measured window counts.
launch=()
[ "$TOOL" = callgrind ] && launch=(valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes
                                  --callgrind-out-file="$OUT/callgrind.out.%p")
ip netns exec $UP "${launch[@]}" "$PH" capture --quiet --mtu 1500 --db "$OUT/profile.db" \
    --dns-upstream $SERVER:53 -- bash "$HERE/profile-connections.sh" --inner "$OUT/run" 2> "$OUT/capture.log" &
capture=$!
wait_for "$OUT/run.ready" ready || { echo "profile-connections: capture did not start" >&2; cat "$OUT/capture.log" >&2; exit 1; }
if [ "$TOOL" = strace ]; then
    strace -f -c -p $capture -o "$OUT/strace.txt" 2> "$OUT/strace.log" &
    tracer=$!
    # strace says "Process N attached" for each thread once it is attached.
    wait_for "$OUT/strace.log" attached || { echo "profile-connections: strace did not attach" >&2; cat "$OUT/strace.log" >&2; exit 1; }
    sleep 0.5
    faults_before=$(awk '{print $10}' /proc/$capture/stat)
else
    callgrind_control -i on $capture > /dev/null
fi
echo go > "$OUT/run.go"
wait_for "$OUT/run.result" count=
if [ "$TOOL" = strace ]; then
    faults_after=$(awk '{print $10}' /proc/$capture/stat)
    kill -INT $tracer; wait $tracer || true
else
    callgrind_control -i off $capture > /dev/null
fi
echo done > "$OUT/run.done"
wait $capture || true

if [ "$TOOL" = strace ]; then
    echo "profile: $(cat "$OUT/run.result") under strace (times are not meaningful here)"
    echo "minor page faults per connection: $(echo "scale=2; ($faults_after - $faults_before) / $N" | bc)"
    python3 - "$OUT/strace.txt" "$N" << 'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(path):
    parts = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
        rows.append((int(parts[3]), parts[-1]))
print("system calls per connection: %.2f" % (sum(c for c, _ in rows) / n))
for calls, name in sorted(rows, reverse=True):
    print("  %8.2f  %s" % (calls / n, name))
EOF
    exit 0
fi
echo "profile: $(cat "$OUT/run.result") under callgrind (times are not meaningful here)"
python3 - "$OUT" "$N" << 'EOF'
import glob, re, subprocess, sys
out, n = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(out + "/callgrind.out.*"))
total = 0
per_thread = []
for f in files:
    text = open(f, errors="replace").read()
    m = re.search(r"^totals: (\d+)", text, re.M)
    ir = int(m.group(1)) if m else 0
    if ir == 0:
        continue
    total += ir
    per_thread.append((ir, f))
print("instructions per connection (user space): %d" % (total // n))
for ir, f in sorted(per_thread, reverse=True):
    print("  thread file %-40s %10d per connection" % (f.rsplit("/", 1)[1], ir // n))
for ir, f in sorted(per_thread, reverse=True)[:4]:
    print("\n== %s: top inclusive functions, instructions per connection" % f.rsplit("/", 1)[1])
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", f],
                            capture_output=True, text=True).stdout
    shown = 0
    for line in report.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)", line)
        if not m or "PROGRAM TOTALS" in line or ":" not in m.group(2):
            continue
        count = int(m.group(1).replace(",", ""))
        name = m.group(2).split(":", 1)[1].strip()[:110]
        print("  %9d  %s" % (count // n, name))
        shown += 1
        if shown >= 45:
            break
EOF
