#!/usr/bin/env python3
"""Test clients for the end-to-end tests; run as (part of) the captured command.

Each subcommand prints one result line and exits non-zero when the behaviour is wrong.
Standard library only.
"""
import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def tcp_many(host, port, count, size):
    """Open COUNT connections at once, then echo SIZE bytes over each and check them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for i in range(count):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect((host, port))
        socks.append(s)
    payloads = []
    for i, s in enumerate(socks):
        payload = (b"%06d:" % i) + bytes((i + j) % 256 for j in range(size - 7))
        payloads.append(payload)
        s.sendall(payload)
    for s, payload in zip(socks, payloads):
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                break
            got += chunk
        if got != payload:
            print("mismatch on a connection: got %d bytes" % len(got))
            sys.exit(1)
    for s in socks:
        s.close()
    print("ok %d" % count)


def udp_echo(host, port, count, size):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((host, port))
    for i in range(count):
        payload = (b"%06d:" % i) + bytes((i * 7 + j) % 256 for j in range(size - 7))
        s.send(payload)
        got = s.recv(65536)
        if got != payload:
            print("datagram %d: got %d bytes, wanted %d" % (i, len(got), len(payload)))
            sys.exit(1)
    print("ok %d" % count)


def udp_once(host, port, size):
    """One datagram of SIZE bytes; prints "echoed N" or "lost" (no echo within 2 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((host, port))
    s.send(b"x" * size)
    try:
        print("echoed %d" % len(s.recv(70000)))
    except socket.timeout:
        print("lost")


def refused(host, port):
    """Connect to a closed port: the error must be 'connection refused', not a timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(60)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        print("refused")
        return
    except socket.timeout:
        print("timeout")
        sys.exit(1)
    except OSError as e:
        print("error %s" % errno.errorcode.get(e.errno, e.errno))
        sys.exit(1)
    print("connected")
    sys.exit(1)


def abort(host, port, path, keep):
    """GET PATH, read KEEP body bytes, then reset the connection (SO_LINGER 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect((host, port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
    got = 0
    while got < keep:
        chunk = s.recv(min(65536, keep - got))
        if not chunk:
            print("server closed early after %d bytes" % got)
            sys.exit(1)
        got += len(chunk)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("aborted after %d" % got)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(host, count):
    """ICMP echo over a raw socket (root): COUNT requests, each reply must match id, seq, data."""
    v6 = ":" in host
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(5)
    ident = 0x5048
    for seq in range(count):
        data = b"phonehome-ping-%04d" % seq
        kind = 128 if v6 else 8
        header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
        # The kernel fills the ICMPv6 checksum (it needs the pseudo-header).
        csum = 0 if v6 else checksum(header + data)
        s.sendto(struct.pack("!BBHHH", kind, 0, csum, ident, seq) + data, (host, 0))
        while True:
            packet = s.recv(2048)
            icmp = packet if v6 else packet[(packet[0] & 0x0F) * 4:]
            rtype, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if rtype == (129 if v6 else 0) and rseq == seq and icmp[8:] == data:
                break
    print("ok %d" % count)


def exit_on_sigint(pidfile):
    """Leaves a `sleep 600` behind (its pid in `pidfile`), then waits until SIGINT, which ends
    it with exit 3; `pidfile`.ready says the handler is in place."""
    bg = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(pidfile, "w") as f:
        f.write(str(bg.pid))
    signal.signal(signal.SIGINT, lambda *_: os._exit(3))
    open(pidfile + ".ready", "w").close()
    while True:
        time.sleep(0.1)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tcp-many":
        tcp_many(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "udp-echo":
        udp_echo(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "udp-once":
        udp_once(args[0], int(args[1]), int(args[2]))
    elif cmd == "refused":
        refused(args[0], int(args[1]))
    elif cmd == "ping":
        ping(args[0], int(args[1]))
    elif cmd == "abort":
        abort(args[0], int(args[1]), args[2], int(args[3]))
    elif cmd == "exit-on-sigint":
        exit_on_sigint(args[0])
    else:
        print("unknown subcommand %s" % cmd)
        sys.exit(2)


if __name__ == "__main__":
    main()
