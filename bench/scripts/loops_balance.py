"""How evenly the echo example's loops share connections, and how fast they
take short ones, for each way of spreading them: one loop (the baseline),
then --threads N with reuseport (the kernel's hash), cpu (a BPF program
steering by CPU, loops pinned) and hand-off (one acceptor, least-loaded
loop).

usage: loops_balance.py [--threads 2] [--rounds 3] [--churn-seconds 5] [--out FILE]

Per configuration and round:
  - hold 100, hold 10,000: reactor-bench --mode hold holds that many
    connections (10,000 from source addresses 127.0.0.2-9), then the server
    is stopped with SIGINT and its log says how many connections each loop
    took. Reported: the busiest loop's share of the connections against the
    mean share (1/N): 1.00 is a perfect balance, N means one loop took all.
  - churn: reactor-bench --mode churn -c 100 for --churn-seconds: connect,
    one 64 B exchange, abortive close, again. Reported: connections per
    second, and the busiest loop's share of them.
The bench runs 2 client threads (-t 2), one per CPU of a 2-core machine,
so that connects come from both CPUs (which matters to CPU steering).

Needs the release binaries under $CARGO_TARGET_DIR:
  cargo build --release --example echo && cargo build --release -p reactor-bench"""
import argparse, json, os, re, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from attack_servers import bench_binary, example, free_port, raise_nofile

SHARE = re.compile(r"loop (\d+): (\d+) connections? \(")

def start_echo(port, threads, balance, pin):
    args = [example("echo"), f"127.0.0.1:{port}", "--idle-timeout", "0"]
    if threads > 1:
        args += ["--threads", str(threads), "--balance", balance] + (["--pin"] if pin else [])
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"})
    # Wait until every loop runs (or, with one loop, the listener is up).
    want = "of %d running" % threads if threads > 1 else "listening on"
    seen, need = 0, threads if threads > 1 else 1
    lines = []
    while seen < need:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("echo exited: " + "".join(lines))
        lines.append(line)
        seen += want in line
    return proc, lines

def stop_echo(proc, lines):
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    lines += err.splitlines()
    shares = sorted((int(m.group(1)), int(m.group(2))) for m in map(SHARE.search, lines) if m)
    return [n for _, n in shares]

def bench(port, *args):
    run = subprocess.run([bench_binary(), f"127.0.0.1:{port}", "--json", "-q", "-t", "2", *args],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
    return json.loads(run.stdout) if run.stdout.strip() else {}

def busiest(shares):
    total = sum(shares)
    return max(shares) / (total / len(shares)) if total else None

def one(threads, balance, pin, workload, churn_seconds):
    port = free_port()
    proc, lines = start_echo(port, threads, balance, pin)
    try:
        if workload == "hold-100":
            result = bench(port, "--mode", "hold", "-c", "100", "-D", "1s", "-w", "0s")
        elif workload == "hold-10k":
            result = bench(port, "--mode", "hold", "-c", "10000", "--source", "127.0.0.2-127.0.0.9", "-D", "2s",
                           "-w", "0s", "--connect-timeout", "10s")
        else:
            result = bench(port, "--mode", "churn", "-c", "100", "-D", f"{churn_seconds}s", "-w", "1s")
    finally:
        shares = stop_echo(proc, lines)
    return dict(threads=threads, balance=balance, pin=pin, workload=workload, shares=shares,
                busiest=busiest(shares) if threads > 1 else None,
                conns_per_s=result.get("messages_per_s") if workload == "churn" else None,
                came_up=result.get("came_up"), errors=result.get("error_total"))

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--churn-seconds", type=int, default=5)
    parser.add_argument("--out")
    opts = parser.parse_args()
    raise_nofile()
    configs = [(1, "-", False), (opts.threads, "reuseport", False), (opts.threads, "reuseport", True),
               (opts.threads, "cpu", True), (opts.threads, "hand-off", False)]
    results = []
    for round_ in range(opts.rounds):
        for threads, balance, pin in configs:
            for workload in ["hold-100", "hold-10k", "churn"]:
                r = one(threads, balance, pin, workload, opts.churn_seconds)
                r["round"] = round_
                results.append(r)
                print(json.dumps(r), flush=True)
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(results, f, indent=1)
    print()
    print("| loops | balance | pin | busiest/mean, hold 100 | busiest/mean, hold 10,000 | busiest/mean, churn | churn conn/s |")
    print("|---|---|---|---|---|---|---|")
    for threads, balance, pin in configs:
        def of(workload, key):
            vals = [r[key] for r in results if (r["threads"], r["balance"], r["pin"], r["workload"])
                    == (threads, balance, pin, workload) and r[key] is not None]
            return vals
        def ratio(workload):
            vals = of(workload, "busiest")
            return " / ".join(f"{v:.2f}" for v in vals) if vals else "-"
        rates = of("churn", "conns_per_s")
        rate = " / ".join(f"{v:,.0f}" for v in rates) if rates else "-"
        print(f"| {threads} | {balance} | {'yes' if pin else 'no'} | {ratio('hold-100')} | {ratio('hold-10k')} "
              f"| {ratio('churn')} | {rate} |")

if __name__ == "__main__":
    main()
