#!/usr/bin/env bash
# Regenerates the small vendored capture corpus (rust-core/tests/corpus-data/): real traffic
# between two network namespaces, recorded with tcpdump, under made-up names, and the names an
# independent dissector (tshark) reads from each capture (expected.tsv).
#
#   scripts/make-corpus.sh            (as root; needs tcpdump, tshark, curl, dig, dnsmasq,
#                                      openssl, python3; python3 -m pip install aioquic for the
#                                      QUIC capture, which is skipped without it)
#
# Scenarios: HTTP with a Host header, HTTPS with SNI (curl), a bare TLS handshake (openssl
# s_client), DNS queries (dig against dnsmasq), SMTP STARTTLS, and a QUIC Initial.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/rust-core/tests/corpus-data"
for tool in tcpdump tshark curl dig dnsmasq openssl python3; do
    command -v "$tool" >/dev/null || { echo "make-corpus: $tool missing" >&2; exit 2; }
done

cli=h5corpus-cli
srv=h5corpus-srv
cli_ip=198.18.55.1
srv_ip=198.18.55.2
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    ip netns del "$cli" 2>/dev/null || true
    ip netns del "$srv" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$cli"
ip netns add "$srv"
ip link add h5corpus-c netns "$cli" type veth peer name h5corpus-s netns "$srv"
ip -n "$cli" addr add "$cli_ip/24" dev h5corpus-c
ip -n "$srv" addr add "$srv_ip/24" dev h5corpus-s
for ns in "$cli" "$srv"; do
    ip -n "$ns" link set lo up
done
ip -n "$cli" link set h5corpus-c up
ip -n "$srv" link set h5corpus-s up
# No router advertisements or IPv6 chatter in the captures.
ip netns exec "$cli" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec "$srv" sysctl -qw net.ipv6.conf.all.disable_ipv6=1

in_srv() { ip netns exec "$srv" "$@"; }
in_cli() { ip netns exec "$cli" "$@"; }
background() { "$@" >"$work/server-$((${#pids[@]})).log" 2>&1 & pids+=("$!"); }

# Servers: HTTP, HTTPS (TLS 1.3, self-signed), DNS, SMTP with STARTTLS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=h5corp.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir -p "$work/www" && echo "hello" >"$work/www/index.html"
background ip netns exec "$srv" python3 -m http.server 80 --bind "$srv_ip" --directory "$work/www"
background ip netns exec "$srv" openssl s_server -quiet -accept "$srv_ip:443" -cert "$work/cert.pem" \
    -key "$work/key.pem" -www
background ip netns exec "$srv" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address="$srv_ip" --address=/h5corp.test/"$srv_ip" --pid-file="$work/dnsmasq.pid"
cat >"$work/smtp.py" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.create_server((sys.argv[1], 587))
while True:
    conn, _ = srv.accept()
    f = conn.makefile("rb")
    conn.sendall(b"220 mail.h5corp.test ESMTP\r\n")
    for line in f:
        cmd = line.strip().upper()
        if cmd.startswith(b"EHLO"):
            conn.sendall(b"250-mail.h5corp.test\r\n250 STARTTLS\r\n")
        elif cmd == b"STARTTLS":
            conn.sendall(b"220 go ahead\r\n")
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (ssl.SSLError, OSError):
                pass
            break
        else:
            conn.sendall(b"250 ok\r\n")
    conn.close()
PY
background ip netns exec "$srv" python3 "$work/smtp.py" "$srv_ip" "$work/cert.pem" "$work/key.pem"
for _ in $(seq 200); do
    listening="$(in_srv ss -Hltnu)"
    if grep -q ":80 " <<<"$listening" && grep -q ":443 " <<<"$listening" &&
        grep -q ":587 " <<<"$listening" && grep -q ":53 " <<<"$listening"; then
        break
    fi
    sleep 0.1
done

# record NAME COMMAND...: the client's traffic during COMMAND, as NAME.pcap.
record() {
    local name="$1"
    shift
    # Started directly (not through a function) so that $! is tcpdump; TERM makes it flush.
    ip netns exec "$cli" tcpdump -q -U -i h5corpus-c -s 0 -w "$work/$name.pcap" 2>/dev/null &
    local dump=$!
    # tcpdump writes the file header once it captures.
    for _ in $(seq 100); do
        [ -s "$work/$name.pcap" ] && break
        sleep 0.1
    done
    sleep 0.5
    "$@" >/dev/null 2>&1 || true
    sleep 1
    kill -TERM "$dump"
    wait "$dump" || true
    mv "$work/$name.pcap" "$out/$name.pcap"
}

mkdir -p "$out"
rm -f "$out"/*.pcap
record http-host in_cli curl -s -m 5 --resolve "www.h5corp.test:80:$srv_ip" \
    -A "h5corp-agent/1.0" http://www.h5corp.test/index.html
record https-sni in_cli curl -s -k -m 5 --resolve "shop.h5corp.test:443:$srv_ip" \
    https://shop.h5corp.test/
record tls-s-client in_cli sh -c \
    "echo Q | timeout 5 openssl s_client -connect $srv_ip:443 -servername secure.h5corp.test"
record dns-queries in_cli sh -c \
    "dig +tries=1 +time=2 @$srv_ip tracker.h5corp.test A; dig +tries=1 +time=2 @$srv_ip cdn.h5corp.test AAAA"
record smtp-starttls in_cli sh -c \
    "echo QUIT | timeout 5 openssl s_client -starttls smtp -connect $srv_ip:587 -servername mail.h5corp.test"
if python3 -c "import aioquic" 2>/dev/null; then
    cat >"$work/quic.py" <<'PY'
import asyncio, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
async def main():
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sys.argv[2])
    try:
        async with connect(sys.argv[1], 443, configuration=config, wait_connected=True):
            pass
    except Exception:
        pass
asyncio.run(asyncio.wait_for(main(), 1.5))
PY
    # Nothing listens on UDP 443: the Initial goes out (and is retransmitted) unanswered.
    record quic-initial in_cli python3 "$work/quic.py" "$srv_ip" video.h5corp.test
else
    echo "make-corpus: aioquic not installed, no QUIC capture" >&2
fi

# expected.tsv: per flow, the client side and the name tshark reads: TLS/QUIC SNI from the
# client hello, HTTP Host from the request, the DNS query name from the query.
{
    printf 'pcap\tproto\tsrc_ip\tsrc_port\tdst_ip\tdst_port\thostname\tkind\n'
    for f in "$out"/*.pcap; do
        tshark -n -r "$f" -T fields -E separator=/t \
            -Y 'tls.handshake.type == 1 || http.request || dns.flags.response == 0' \
            -e ip.src -e ip.dst -e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport \
            -e tls.handshake.extensions_server_name -e http.host -e dns.qry.name -e quic.version |
            awk -F'\t' -v pcap="$(basename "$f")" 'BEGIN { OFS = "\t" } {
                proto = ($3 != "") ? "tcp" : "udp"
                sport = ($3 != "") ? $3 : $5; dport = ($4 != "") ? $4 : $6
                if ($7 != "") { name = $7; kind = ($10 != "") ? "quic" : "tls" }
                else if ($8 != "") { name = $8; kind = "http" }
                else if ($9 != "") { name = $9; kind = "dns" }
                else next
                key = proto FS $1 FS sport FS $2 FS dport
                if (!(key in seen)) { seen[key] = 1; print pcap, proto, $1, sport, $2, dport, tolower(name), kind }
            }'
    done
} >"$out/expected.tsv"
ls -l "$out"
cat "$out/expected.tsv"
