"""Server CPU per echoed message over TLS, and per TLS handshake: reactor
(its echo handler under `Tls::server`) against tokio-rustls, each beside its
plaintext echo measured in the same run.

usage: tls_cpu.py [--rounds 5] [--seconds 3] [--warmup 1] [--clients 4]
                  [--handshake-clients 2] [--json]

Each server is `reactor-bench serve PEER [--tls] --core 0` (pinned to CPU
0); the clients are Python threads pinned to CPU 1. Rounds alternate the
servers (reactor, tokio, reactor --tls, tokio --tls), so that drift in the
machine's load falls on all of them alike. Per server and round:

  - echo: --clients threads, each on one kept-alive connection (TLS for the
    TLS servers, the certificate trusted from --cert-out), ping-pong 64-byte
    messages; after --warmup seconds, for --seconds: the server's CPU time
    (the sum of /proc/PID/task/*/schedstat, nanoseconds on a CPU) over the
    messages echoed in that window. Python's client is slow, so messages
    per second mostly measure the client; the figure is server CPU per
    message, which does not depend on how fast the client is.
  - handshake (TLS servers only): --handshake-clients threads, each in a
    loop: connect, a full handshake (no session is offered, so nothing is
    resumed; TLS 1.3, X25519, the ECDSA P-256 certificate rcgen makes), one
    64-byte echo, close. Handshakes per second (bounded by the Python
    client on one CPU) and the server's CPU per handshake.

Medians over the rounds, every round below them; --json prints them all.

Needs the release binary under $CARGO_TARGET_DIR (or target/):
  cargo build --release -p reactor-bench"""
import argparse, glob, json, os, socket, ssl, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from attack_servers import bench_binary

SERVERS = [("reactor", False), ("tokio", False), ("reactor", True), ("tokio", True)]
MESSAGE = bytes(range(64))

def name(peer, tls):
    return f"{peer} {'tls' if tls else 'plain'}"

def start(peer, tls, cert):
    args = [bench_binary(), "serve", peer, "127.0.0.1:0", "--core", "0"]
    if tls:
        args += ["--tls", "--cert-out", cert]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "RUST_LOG": "warn"})
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"{name(peer, tls)}: no `listening on` line: {line!r}")
    host, port = line.split()[-1].rsplit(":", 1)
    return proc, int(port)

def cpu_ns(pid):
    """The process's time on a CPU, all threads, nanoseconds."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total

def client_context(cert):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = True
    return ctx

def pin_client():
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass

def recv_exact(sock, n):
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise ConnectionError("closed mid-echo")
        got += chunk
    return got

def connect(port, ctx):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(sock, server_hostname="localhost") if ctx else sock

def measure(pid, workload, threads, warmup, seconds):
    """Runs `workload(counter, stop)` on `threads` threads; returns (count,
    server CPU ns, wall s) over the window after the warm-up."""
    counts = [0] * threads
    stop = threading.Event()
    errors = []
    def run(i):
        pin_client()
        try:
            workload(counts, i, stop)
        except Exception as err:  # reported after the window
            errors.append(err)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(warmup)
    c0, t0, n0 = cpu_ns(pid), time.monotonic(), sum(counts)
    time.sleep(seconds)
    c1, t1, n1 = cpu_ns(pid), time.monotonic(), sum(counts)
    stop.set()
    for w in workers:
        w.join(30)
    if errors:
        raise RuntimeError(f"client error: {errors[0]!r}")
    return n1 - n0, c1 - c0, t1 - t0

def echo_workload(port, ctx):
    def work(counts, i, stop):
        sock = connect(port, ctx)
        try:
            while not stop.is_set():
                sock.sendall(MESSAGE)
                if recv_exact(sock, 64) != MESSAGE:
                    raise RuntimeError("wrong echo")
                counts[i] += 1
        finally:
            sock.close()
    return work

def handshake_workload(port, ctx):
    def work(counts, i, stop):
        while not stop.is_set():
            sock = connect(port, ctx)  # no session= argument: a full handshake
            try:
                if sock.session_reused:
                    raise RuntimeError("a session was resumed")
                sock.sendall(MESSAGE)
                if recv_exact(sock, 64) != MESSAGE:
                    raise RuntimeError("wrong echo")
            finally:
                sock.close()
            counts[i] += 1
    return work

def one(peer, tls, args, cert):
    proc, port = start(peer, tls, cert)
    try:
        ctx = client_context(cert) if tls else None
        n, cpu, wall = measure(proc.pid, echo_workload(port, ctx), args.clients, args.warmup, args.seconds)
        row = dict(server=name(peer, tls), messages=n, messages_per_s=n / wall, cpu_ns=cpu,
                   cpu_per_message_us=cpu / n / 1e3 if n else None)
        if tls:
            n, cpu, wall = measure(proc.pid, handshake_workload(port, ctx), args.handshake_clients, args.warmup,
                                   args.seconds)
            row.update(handshakes=n, handshakes_per_s=n / wall, handshake_cpu_ns=cpu,
                       cpu_per_handshake_us=cpu / n / 1e3 if n else None)
        return row
    finally:
        proc.kill()
        proc.wait()

def med(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None

def fmt(v, spec):
    if v is not None:
        return format(v, spec)
    width = "".join(c for c in spec.split(".")[0] if c.isdigit())
    return "-".rjust(int(width or 0))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--handshake-clients", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cert = os.path.join(tempfile.mkdtemp(prefix="tls_cpu-"), "cert.pem")
    rows = []
    for r in range(args.rounds):
        for peer, tls in SERVERS:
            row = one(peer, tls, args, cert)
            row["round"] = r
            rows.append(row)
            if not args.json:
                print(f"round {r}: {row['server']:13} {fmt(row['cpu_per_message_us'], '.2f')} us/msg"
                      f" ({row['messages_per_s']:.0f} msg/s)"
                      + (f", {row['handshakes_per_s']:.0f} hs/s, {fmt(row['cpu_per_handshake_us'], '.0f')} us/hs"
                         if tls else ""), file=sys.stderr)
    summary = {}
    for peer, tls in SERVERS:
        mine = [r for r in rows if r["server"] == name(peer, tls)]
        summary[name(peer, tls)] = {k: med(mine, k) for k in
                                    ("cpu_per_message_us", "messages_per_s", "handshakes_per_s", "cpu_per_handshake_us")}
    for peer in ("reactor", "tokio"):
        t, p = summary[name(peer, True)]["cpu_per_message_us"], summary[name(peer, False)]["cpu_per_message_us"]
        summary[name(peer, True)]["tls_over_plain"] = t / p if t and p else None
    if args.json:
        print(json.dumps(dict(args=vars(args), load_average=os.getloadavg(), summary=summary, rounds=rows), indent=1))
        return
    print(f"medians of {args.rounds} rounds, {args.seconds:g} s each after {args.warmup:g} s warm-up; "
          f"{args.clients} echo clients, {args.handshake_clients} handshake clients; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'server':14}{'CPU/msg us':>11}{'msg/s':>9}{'TLS/plain':>10}{'hs/s':>8}{'CPU/hs us':>10}")
    for key, s in summary.items():
        print(f"{key:14}{fmt(s['cpu_per_message_us'], '11.2f')}{fmt(s['messages_per_s'], '9.0f')}"
              f"{fmt(s.get('tls_over_plain'), '10.2f')}{fmt(s['handshakes_per_s'], '8.0f')}"
              f"{fmt(s['cpu_per_handshake_us'], '10.0f')}")
    r, t = summary["reactor tls"], summary["tokio tls"]
    if r["cpu_per_message_us"] and t["cpu_per_message_us"]:
        print(f"reactor/tokio over TLS: CPU per message {r['cpu_per_message_us'] / t['cpu_per_message_us']:.2f}, "
              f"CPU per handshake {fmt(r['cpu_per_handshake_us'] and r['cpu_per_handshake_us'] / t['cpu_per_handshake_us'], '.2f')}")

if __name__ == "__main__":
    main()
