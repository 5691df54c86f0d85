"""An accept storm: STORM connects at once, from several source addresses,
against http_hello (or echo, or nginx) with a connection limit, each asking
one request and holding the connection if served.

usage: accept_storm.py {http_hello,echo,nginx} --max-connections N [--storm 20000] [--hold 5] [--out FILE]
       accept_storm.py summary FILE    (a table of the runs in FILE, from --out, by configuration)

The storm is split over reactor-bench storm processes of at most 10,000
connections each (a process's descriptor limit is the hard limit, 20,000
here), each from its own four source addresses (127.0.0.2-5, 127.0.0.6-9,
...), all started together. Meanwhile the server's CPU time (from
/proc/PID/stat), descriptors and RSS are sampled every 0.5 s. After the
storm: 5 s of quiet, whose server CPU must be about zero (no spin), then a
normal client (100 connections, one request each) that must all be served,
and the server's stats line (reactor servers, logged every 10 s at debug)
for the counters: accepted = closed + open + refused.

Needs the release binaries under $CARGO_TARGET_DIR (and nginx for nginx)."""
import argparse, json, os, re, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from attack_servers import (Server, bench_binary, cpu_seconds, example, fd_count, free_port, http_hello, memory_kib,
                            nginx, raise_nofile)

HTTP = dict(request=r"GET / HTTP/1.1\r\nHost: x\r\n\r\n", served="HTTP/1.1 200", refused="HTTP/1.1 503")
ECHO = dict(request=r"hello\n", served="hello\n", refused="error: server full")
STATS = r"stats: open (\d+) accepted (\d+) closed (\d+)"
LOG = "warn,reactor_loop::engine=debug,reactor_loop::engine::accept=info"

class Sampler(threading.Thread):
    """Samples the server every 0.5 s: CPU seconds, descriptors, RSS."""
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], False
    def run(self):
        t0 = time.time()
        while not self.stop:
            try:
                mem = memory_kib(self.pid)
                self.samples.append((time.time() - t0, cpu_seconds(self.pid), fd_count(self.pid), mem["VmRSS"]))
            except (OSError, KeyError):
                return
            time.sleep(0.5)

def storm(port, n, kind, hold, first_source):
    """Starts one storm process of n connections from four source addresses."""
    src = f"127.0.0.{first_source}-127.0.0.{first_source + 3}"
    argv = [bench_binary(), "storm", f"127.0.0.1:{port}", "-c", str(n), "--source", src, "--request", kind["request"],
            "--served", kind["served"], "--refused", kind["refused"], "--hold", f"{hold}s", "--timeout", "30s", "--json"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

def summary(path):
    """One row per configuration: outcomes of every run, medians of the rest."""
    import statistics
    runs = [json.loads(line) for line in open(path)]
    configs = []
    for r in runs:
        key = (r["server"], r["max_connections"], r["storm"])
        if key not in configs: configs.append(key)
    print("| server | --max-connections | storm | runs | outcomes (each run) | all served or cleanly refused "
          "| all outcomes in (s) | connect p99 (ms) | server CPU over the storm (s) | CPU 3 s after | CPU 5 s idle "
          "| peak fds | peak RSS (MiB) | 100 clients after | accepted - closed - open |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in configs:
        sel = [r for r in runs if (r["server"], r["max_connections"], r["storm"]) == key]
        med = lambda k: statistics.median(r[k] for r in sel)
        outcomes = "; ".join(", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r["outcomes"].items()) for r in sel)
        stats = ", ".join(str(r["stats_accepted_minus_closed_open"]) for r in sel if "stats_accepted" in r) or "-"
        print(f"| {key[0]} | {key[1]:,} | {key[2]:,} | {len(sel)} | {outcomes} | {sum(r['ok'] for r in sel)}/{len(sel)} "
              f"| {med('storm_s'):.2f} | {med('connect_p99_ms'):,.0f} | {med('cpu_storm_s'):.2f} "
              f"| {max(r['cpu_after_3s'] for r in sel):.2f} | {max(r['cpu_idle_5s'] for r in sel):.2f} "
              f"| {max(r['peak_fds'] for r in sel):,} | {max(r['peak_rss_kib'] for r in sel) / 1024:.1f} "
              f"| {min(r['after_served'] for r in sel)}/100 | {stats} |")

def main():
    if sys.argv[1:2] == ["summary"]:
        return summary(sys.argv[2])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server", choices=["http_hello", "echo", "nginx"])
    p.add_argument("--max-connections", type=int, required=True)
    p.add_argument("--storm", type=int, default=20000)
    p.add_argument("--hold", type=float, default=5.0)
    p.add_argument("--out")
    args = p.parse_args()
    raise_nofile()
    port = free_port()
    if args.server == "http_hello":
        server, kind = http_hello(port, "--max-connections", str(args.max_connections), log=LOG), HTTP
        server.keep = None
    elif args.server == "echo":
        server = Server("echo", [example("echo"), f"127.0.0.1:{port}", "--max-connections", str(args.max_connections)],
                        port, env={"RUST_LOG": LOG})
        kind = ECHO
    else:
        server, kind = nginx(port, connections=args.max_connections), HTTP
    sampler = Sampler(server.pid); sampler.start()
    result = {"server": args.server, "max_connections": args.max_connections, "storm": args.storm}
    try:
        time.sleep(2.0)
        c0, t0 = cpu_seconds(server.pid), time.time()
        sizes = [min(10000, args.storm - i) for i in range(0, args.storm, 10000)]
        procs = [storm(port, n, kind, args.hold, 2 + 4 * i) for i, n in enumerate(sizes)]
        reports = [json.loads(proc.communicate()[0]) for proc in procs]
        t1, c1 = time.time(), cpu_seconds(server.pid)
        time.sleep(3.0)  # the clients' resets are taken in
        c2 = cpu_seconds(server.pid); time.sleep(5.0); c3 = cpu_seconds(server.pid)
        after = json.loads(subprocess.run(
            [bench_binary(), "storm", f"127.0.0.1:{port}", "-c", "100", "--request", kind["request"],
             "--served", kind["served"], "--refused", kind["refused"], "--hold", "0s", "--json"],
            capture_output=True, text=True).stdout)
        outcomes = {}
        for r in reports:
            for key, value in r["outcomes"].items():
                if isinstance(value, dict):
                    for k, v in value.items(): outcomes[f"{key}:{k}"] = outcomes.get(f"{key}:{k}", 0) + v
                else:
                    outcomes[key] = outcomes.get(key, 0) + value
        result.update(
            outcomes={k: v for k, v in outcomes.items() if v},
            ok=all(r["ok"] for r in reports),
            storm_s=max(r["storm_s"] for r in reports),
            connect_p99_ms=max(r["connect_time"]["p99_ms"] for r in reports),
            connect_max_ms=max(r["connect_time"]["max_ms"] for r in reports),
            outcome_p99_ms=max(r["outcome_time"]["p99_ms"] for r in reports),
            outcome_max_ms=max(r["outcome_time"]["max_ms"] for r in reports),
            cpu_storm_s=round(c1 - c0, 3), storm_wall_s=round(t1 - t0, 2),
            cpu_after_3s=round(c2 - c1, 3), cpu_idle_5s=round(c3 - c2, 3),
            peak_fds=max(s[2] for s in sampler.samples), peak_rss_kib=max(s[3] for s in sampler.samples),
            after_served=after["outcomes"]["served"], after_ok=after["ok"])
        if args.server != "nginx":
            # The next stats line (every 10 s) has the counters once all is quiet.
            mark = time.time()
            while time.time() < mark + 12 and not any(t > mark for t, l in server.lines if re.search(STATS, l)):
                time.sleep(0.5)
            lines = [l for t, l in server.lines if re.search(STATS, l)]
            if lines:
                open_, accepted, closed = map(int, re.search(STATS, lines[-1]).groups())
                result.update(stats_open=open_, stats_accepted=accepted, stats_closed=closed,
                              stats_accepted_minus_closed_open=accepted - closed - open_)
            result["server_log"] = [l for t, l in server.lines if "stats:" not in l][:12]
        else:
            time.sleep(1.0)
            result["server_log"] = open(os.path.join(server.conf_dir, "error.log")).read().splitlines()[:12]
        # Once the normal client's connections are closed too.
        result.update(fds_end=fd_count(server.pid), rss_end_kib=memory_kib(server.pid)["VmRSS"])
    finally:
        sampler.stop = True
        server.stop()
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "a") as f: f.write(json.dumps(result) + "\n")

if __name__ == "__main__":
    main()
