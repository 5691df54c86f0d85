#!/usr/bin/env python3
"""User-space CPU per message of comparison servers, from perf samples.

usage: user_cpu_perf.py PEERS [ROUNDS]
  PEERS: comma-separated `reactor-bench serve` peers (reactor, tokio, mio,
  epoll, ...); PEER@BINARY serves PEER from another build of reactor-bench
  (to compare two builds of the same peer).

Each run pins the server to core 0, loads it from core 1 with 100 ping-pong
connections of 64 bytes (8 s, 1 s warm-up), and samples the server with
`perf record -e cpu-clock -F 20000` for 4 s in the middle. Rounds rotate the
peer order. Per message it prints, from the samples:

  total  all of the server's CPU;
  user   samples in user mode (what /proc's utime estimates);
  code   user samples outside the libc syscall wrappers.

Samples on the instruction right after a syscall (in `send`, `recv`,
`epoll_wait`, ...) are mostly kernel time: a timer tick that falls due while
the kernel returns from the syscall, with interrupts off, is taken on the
first user instruction. /proc's tick-based utime is charged the same way, so
`user` carries that share for every server alike; `code` is the server's own
user-space work.
"""
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.environ.get("BENCH", os.path.join(ROOT, "target", "release", "reactor-bench"))
FREQUENCY = 20000
SAMPLED_S = 4.0
WRAPPERS = {"__send", "__libc_recv", "__libc_send", "epoll_wait", "recv", "send", "__libc_read",
            "__libc_write", "read", "write", "__write", "__read", "sendmsg", "__libc_sendmsg",
            "__libc_recvfrom", "__libc_sendto", "writev", "__writev", "readv", "clock_gettime@@GLIBC_2.17",
            "__vdso_clock_gettime", "__clock_gettime"}


def listening(port):
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    return f"127.0.0.1:{port} " in out


def one_run(spec, port):
    name, _, exe = spec.partition("@")
    server = subprocess.Popen([exe or BENCH, "serve", name, f"127.0.0.1:{port}", "--core", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if listening(port):
                break
            time.sleep(0.1)
        load = subprocess.Popen([BENCH, f"127.0.0.1:{port}", "-c", "100", "-D", "8s", "-w", "1s", "-q",
                                 "--cores", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        time.sleep(2.5)
        data = f"/tmp/user_cpu_perf.{os.getpid()}.data"
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY), "-p", str(server.pid),
                        "-o", data, "--", "sleep", str(SAMPLED_S)], stderr=subprocess.DEVNULL, check=True)
        out, _ = load.communicate()
    finally:
        server.terminate()
        server.wait()
    rate = json.loads(out)["messages_per_s"]
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                             "-F", "sample,dso,sym"], capture_output=True, text=True).stdout
    os.unlink(data)
    total = user = wrapper = 0
    for line in report.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        n, mode, symbol = int(m.group(1)), m.group(3), m.group(4)
        total += n
        if mode == ".":
            user += n
            wrapper += n if symbol in WRAPPERS else 0
    messages = rate * SAMPLED_S
    per_message = lambda samples: samples / FREQUENCY / messages * 1e6
    return per_message(total), per_message(user), per_message(user - wrapper), rate


def main():
    peers = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = collections.defaultdict(list)
    port = 9600
    for r in range(rounds):
        shift = r % len(peers)
        for spec in peers[shift:] + peers[:shift]:
            port += 1
            run = one_run(spec, port)
            results[spec].append(run)
            print(f"round {r + 1}  {spec[:44]:44}  total {run[0]:.3f}  user {run[1]:.3f}  code {run[2]:.3f} µs/msg"
                  f"  ({run[3]:,.0f} msg/s)", flush=True)
    print(f"\nmedians over {rounds} rounds, µs per message:")
    print(f"{'peer':44}  {'total':>7}  {'user':>7}  {'code':>7}  {'msg/s':>9}")
    for spec in peers:
        runs = results[spec]
        median = lambda i: statistics.median(run[i] for run in runs)
        print(f"{spec[:44]:44}  {median(0):7.3f}  {median(1):7.3f}  {median(2):7.3f}  {median(3):9,.0f}")


if __name__ == "__main__":
    main()
