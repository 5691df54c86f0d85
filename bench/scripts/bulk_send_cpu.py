#!/usr/bin/env python3
"""Server CPU per MB and throughput of large replies, by how they go out.

usage: bulk_send_cpu.py [ROUNDS] [FILE_MIB]
needs: cargo build --release -p reactor-bench --bin bulk-serve
       (BULK_SERVE=path selects another build)

Two comparisons, each run ROUNDS times (default 5) alternating the modes,
reporting medians:

  1 MiB replies: `copied` (ctx.write(&vec): copied into the loop's chunks)
    against `owned` (ctx.write_owned(vec): the Vec itself is written). Both
    build the same Vec per reply, so the difference is the copy. 1,000
    replies per run.
  a FILE_MIB (default 256) MiB file: `sendfile` (ctx.send_file: sendfile(2),
    page cache to socket) against `readwrite` (ctx.stream(file): read into
    chunks, then written). 4 transfers per run; the file is in the page
    cache (written, then read once, before the runs).

The server is pinned to CPU 0 and the client (this script) to CPU 1 when
there are two. Server CPU is its user+system time from /proc/PID/schedstat
over the transfers only; MB/s is the client's wall clock (MB = 10^6 bytes).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVE = os.environ.get("BULK_SERVE") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "bulk-serve")


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def start(mode, arg):
    proc = subprocess.Popen([SERVE, "127.0.0.1:0", mode, str(arg)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"bulk-serve {mode}: {line!r}")
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(proc.pid, {0})
    host, port = line.split()[-1].rsplit(":", 1)
    return proc, (host, int(port))


def run(mode, arg, size, requests):
    """Returns (MB/s, server CPU ms per MB)."""
    proc, addr = start(mode, arg)
    try:
        sock = socket.create_connection(addr)
        buf = bytearray(4 * 1024 * 1024)
        view = memoryview(buf)
        # One warm-up reply, outside the measurement.
        for measured in (False, True):
            count = requests if measured else 1
            before_cpu, before = cpu_ns(proc.pid), time.perf_counter()
            for _ in range(count):
                sock.sendall(b"g")
                left = size
                while left:
                    n = sock.recv_into(view[: min(left, len(buf))])
                    if n == 0:
                        sys.exit(f"{mode}: server closed early")
                    left -= n
            elapsed, cpu = time.perf_counter() - before, cpu_ns(proc.pid) - before_cpu
        sock.close()
        mb = size * requests / 1e6
        return mb / elapsed, cpu / 1e6 / mb
    finally:
        proc.kill()
        proc.wait()


def compare(title, modes, rounds):
    results = {mode: [] for mode, *_ in modes}
    for r in range(rounds):
        order = modes if r % 2 == 0 else list(reversed(modes))
        for mode, arg, size, requests in order:
            results[mode].append(run(mode, arg, size, requests))
    print(title)
    print(f"  {'mode':<10} {'MB/s':>10} {'server CPU ms/MB':>18}   (medians of {rounds} runs)")
    for mode, *_ in modes:
        rates = [r for r, _ in results[mode]]
        cpus = [c for _, c in results[mode]]
        print(f"  {mode:<10} {statistics.median(rates):>10.0f} {statistics.median(cpus):>18.4f}"
              f"   CPU runs: {', '.join(f'{c:.4f}' for c in cpus)}")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    file_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    if not os.path.exists(SERVE):
        sys.exit(f"{SERVE} missing: cargo build --release -p reactor-bench --bin bulk-serve")
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {1})
    mib = 1024 * 1024
    compare("1 MiB replies, 1,000 per run:",
            [("copied", mib, mib, 1000), ("owned", mib, mib, 1000)], rounds)
    with tempfile.NamedTemporaryFile(prefix="bulk_send_", dir=os.environ.get("TMPDIR", "/tmp")) as f:
        block = os.urandom(mib)
        for _ in range(file_mib):
            f.write(block)
        f.flush()
        with open(f.name, "rb") as warm:
            while warm.read(8 * mib):
                pass
        size = file_mib * mib
        compare(f"a {file_mib} MiB file, 4 transfers per run:",
                [("sendfile", f.name, size, 4), ("readwrite", f.name, size, 4)], rounds)


if __name__ == "__main__":
    main()
