"""Churn soak: minutes of connect / one exchange / reset at full rate
against the echo example, sampling the server as it goes.

usage: churn_soak.py [--minutes 4] [--connections 50] [--every 5] [--out FILE]

Starts the echo example (RUST_LOG=warn,reactor_loop::engine=debug: only its stats
line, every 10 s), then reactor-bench --mode churn (each connection: connect,
one 64-byte echo, close with SO_LINGER 0, i.e. a reset; again) from
127.0.0.2-127.0.0.9. Every EVERY seconds it samples the server's VmRSS and
RssAnon (/proc/PID/status), its descriptors (/proc/PID/fd) and CPU time;
the stats lines give Stats::open, accepted and closed. After the run it waits
for one more stats line and checks accepted = closed + open, with open 0.

Prints one line per sample, then the summary as JSON. Needs the release
binaries under $CARGO_TARGET_DIR."""
import argparse, json, os, re, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from attack_servers import Server, bench_binary, cpu_seconds, example, fd_count, free_port, memory_kib, raise_nofile

STATS = r"stats: open (\d+) accepted (\d+) closed (\d+)"

def last_stats(server):
    lines = [(t, l) for t, l in server.lines if re.search(STATS, l)]
    if not lines:
        return None
    t, l = lines[-1]
    return t, tuple(map(int, re.search(STATS, l).groups()))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--out")
    args = p.parse_args()
    raise_nofile()
    port = free_port()
    server = Server("echo", [example("echo"), f"127.0.0.1:{port}"], port,
                    env={"RUST_LOG": "warn,reactor_loop::engine=debug"})
    seconds = int(args.minutes * 60)
    samples = []
    try:
        time.sleep(1.0)
        idle = memory_kib(server.pid)
        t0 = time.time()
        bench = subprocess.Popen([bench_binary(), f"127.0.0.1:{port}", "--mode", "churn", "-c", str(args.connections),
                                  "--warmup", "0s", "-D", f"{seconds}s", "--source", "127.0.0.2-127.0.0.9", "--json"],
                                 stdout=subprocess.PIPE, text=True)
        out = []
        threading.Thread(target=lambda: out.append(bench.communicate()[0]), daemon=True).start()
        last_cpu = cpu_seconds(server.pid)
        while bench.poll() is None:
            time.sleep(args.every)
            mem, cpu = memory_kib(server.pid), cpu_seconds(server.pid)
            stats = last_stats(server)
            sample = {"t_s": round(time.time() - t0, 1), "rss_kib": mem["VmRSS"], "rss_anon_kib": mem["RssAnon"],
                      "fds": fd_count(server.pid), "cpu_pct": round(100 * (cpu - last_cpu) / args.every, 1),
                      "open": stats[1][0] if stats else None, "accepted": stats[1][1] if stats else None,
                      "closed": stats[1][2] if stats else None}
            last_cpu = cpu
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        while not out:
            time.sleep(0.1)
        report = json.loads(out[0])
        end = time.time()
        while time.time() < end + 12 and not (last_stats(server) and last_stats(server)[0] > end + 0.5):
            time.sleep(0.5)
        final = last_stats(server)
        mem_end = memory_kib(server.pid)
        steady = [s for s in samples if s["t_s"] >= 30 and s["t_s"] <= seconds]
        summary = {
            "seconds": seconds, "connections": args.connections,
            "exchanges": report["received"], "connects": report["connects"],
            "exchanges_per_s": round(report["received"] / max(report["measured_s"], 1e-9)),
            "client_errors": report["errors"],
            "rss_idle_kib": idle["VmRSS"], "rss_anon_idle_kib": idle["RssAnon"],
            "rss_kib_after_30s_min_max": [min(s["rss_kib"] for s in steady), max(s["rss_kib"] for s in steady)],
            "rss_anon_kib_after_30s_min_max": [min(s["rss_anon_kib"] for s in steady),
                                               max(s["rss_anon_kib"] for s in steady)],
            "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)],
            "open_min_max": [min(s["open"] for s in samples if s["open"] is not None),
                             max(s["open"] for s in samples if s["open"] is not None)],
            "rss_end_kib": mem_end["VmRSS"], "rss_anon_end_kib": mem_end["RssAnon"], "fds_end": fd_count(server.pid),
            "final_stats": dict(zip(("open", "accepted", "closed"), final[1])) if final else None,
        }
        if final:
            open_, accepted, closed = final[1]
            summary["accepted_equals_closed_plus_open"] = accepted == closed + open_
        print(json.dumps(summary, indent=1))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"summary": summary, "samples": samples}) + "\n")
    finally:
        server.stop()

if __name__ == "__main__":
    main()
