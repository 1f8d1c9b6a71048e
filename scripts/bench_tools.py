#!/usr/bin/env python3
"""Load generators for scripts/bench.sh (standard library only).

  echo-server PORT               asyncio TCP echo server (thousands of connections)
  hold HOST PORT N               open N idle connections, print "ready N", hold until stdin closes
  rr HOST PORT COUNT SIZE        COUNT sequential request/responses of SIZE bytes on one
                                 connection; prints "rtt_us mean=.. p50=.. p99=.."
  active HOST PORT N SECONDS     N connections each echoing 16 KiB messages for SECONDS;
                                 prints "active N bytes=.."
  udp-echo-server PORT           UDP echo server (also serves as a "resolver" that echoes the
                                 query back as its answer)
  conns HOST PORT COUNT          COUNT new TCP connections in sequence: connect, one 64-byte
                                 request/response, close; prints "conn_ms p50=.. p99=.. per_s=.."
  udpflows HOST PORT COUNT       COUNT new UDP flows in sequence (a new socket, one 64-byte
                                 datagram and its echo); same output
  dns HOST COUNT                 COUNT DNS queries in sequence, each from a new socket; same output
"""
import asyncio
import resource
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def echo_server(port):
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host=None, port=port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def hold(host, port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=30)
        socks.append(s)
    # One round trip on the last one proves the whole set is established end to end.
    socks[-1].sendall(b"x")
    socks[-1].recv(1)
    print("ready %d" % n, flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def rr(host, port, count, size):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"r" * size
    samples = []
    for i in range(count + 50):
        t0 = time.perf_counter_ns()
        s.sendall(payload)
        got = 0
        while got < size:
            chunk = s.recv(size - got)
            if not chunk:
                raise SystemExit("connection closed")
            got += len(chunk)
        if i >= 50:  # warm-up excluded
            samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    mean = sum(samples) / len(samples)
    print("rtt_us mean=%.1f p50=%.1f p99=%.1f" % (mean, samples[len(samples) // 2], samples[int(len(samples) * 0.99)]))


async def active(host, port, n, seconds):
    msg = b"a" * 16384
    total = 0
    deadline = time.monotonic() + seconds

    async def one():
        nonlocal total
        reader, writer = await asyncio.open_connection(host, port)
        while time.monotonic() < deadline:
            writer.write(msg)
            await writer.drain()
            got = 0
            while got < len(msg):
                chunk = await reader.read(len(msg) - got)
                if not chunk:
                    return
                got += len(chunk)
            total += 2 * len(msg)
        writer.close()

    await asyncio.gather(*(one() for _ in range(n)))
    print("active %d bytes=%d" % (n, total))


async def udp_echo_server(port):
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", port))
    await asyncio.Event().wait()


def report(samples_ns, elapsed_ns):
    samples = sorted(s / 1e6 for s in samples_ns)
    print("conn_ms p50=%.3f p99=%.3f per_s=%.0f count=%d" % (
        samples[len(samples) // 2], samples[int(len(samples) * 0.99)],
        len(samples) / (elapsed_ns / 1e9), len(samples)))


def conns(host, port, count):
    payload = b"c" * 64
    samples = []
    start = time.perf_counter_ns()
    for _ in range(count):
        t0 = time.perf_counter_ns()
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(payload)
        got = 0
        while got < len(payload):
            chunk = s.recv(len(payload) - got)
            if not chunk:
                raise SystemExit("connection closed")
            got += len(chunk)
        s.close()
        samples.append(time.perf_counter_ns() - t0)
    report(samples, time.perf_counter_ns() - start)


def datagrams(host, port, count, message):
    samples = []
    start = time.perf_counter_ns()
    for i in range(count):
        t0 = time.perf_counter_ns()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(message(i), (host, port))
        s.recv(2048)
        s.close()
        samples.append(time.perf_counter_ns() - t0)
    report(samples, time.perf_counter_ns() - start)


def dns_query(i):
    name = b"".join(bytes([len(p)]) + p for p in (b"q%d" % i, b"bench", b"test")) + b"\0"
    return (i & 0xFFFF).to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"


def main():
    raise_nofile()
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "echo-server":
        asyncio.run(echo_server(int(a[0])))
    elif cmd == "hold":
        hold(a[0], int(a[1]), int(a[2]))
    elif cmd == "rr":
        rr(a[0], int(a[1]), int(a[2]), int(a[3]))
    elif cmd == "active":
        asyncio.run(active(a[0], int(a[1]), int(a[2]), float(a[3])))
    elif cmd == "udp-echo-server":
        asyncio.run(udp_echo_server(int(a[0])))
    elif cmd == "conns":
        conns(a[0], int(a[1]), int(a[2]))
    elif cmd == "udpflows":
        datagrams(a[0], int(a[1]), int(a[2]), lambda i: b"u" * 64)
    elif cmd == "dns":
        datagrams(a[0], 53, int(a[1]), dns_query)
    else:
        raise SystemExit("unknown subcommand " + cmd)


if __name__ == "__main__":
    main()
