#!/usr/bin/env python3
"""Load generators for scripts/bench.sh (standard library only).

  echo-server PORT               asyncio TCP echo server (thousands of connections)
  hold HOST PORT N               open N idle connections, print "ready N", hold until stdin closes
  rr HOST PORT COUNT SIZE        COUNT sequential request/responses of SIZE bytes on one
                                 connection; prints "rtt_us mean=.. p50=.. p99=.."
  active HOST PORT N SECONDS     N connections each echoing 16 KiB messages for SECONDS;
                                 prints "active N bytes=.."
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
    else:
        raise SystemExit("unknown subcommand " + cmd)


if __name__ == "__main__":
    main()
