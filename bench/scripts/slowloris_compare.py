"""Slowloris against http_hello and nginx, side by side, interleaved.

usage: slowloris_compare.py load [--rounds N] [--slow N] [--wrk-seconds S] [--delay-ms D] [--out FILE]
       slowloris_compare.py lifetimes [--slow N] [--seconds S] [--out FILE]
       slowloris_compare.py lockout [--slow N] [--hello-args ARGS] [--hello-only] [--silent-only] [--out FILE]
       slowloris_compare.py summary FILE      (the load or lockout table again, from their --out)

load: in each round, for each server (the order alternates by round) and
each condition (none, trickle, silent; the order rotates), start the attack
(reactor-bench slowloris with --reconnect: SLOW connections that trickle a
head a byte a second, or send nothing), let it ramp up, sample the server's
CPU for 3 s with only the attack on, then run wrk (1 thread, 50 connections;
flat out, or paced by --delay-ms between a reply and the next request) and
sample the server's CPU over it. Prints medians over the rounds, and the
ratios to no attack taken round by round.

lifetimes: SLOW trickling, then SLOW silent connections, without reconnect,
against both servers at once for S seconds: how long each server lets them
live, and what it says before closing.

lockout: more slow connections (default 12,000) than either server takes
(10,000), with --reconnect: after a 10 s ramp, a normal client of 100
connections (one request each, reactor-bench storm) every 2 s for 30 s;
what share of them is served, refused with a 503, or dropped otherwise.

Needs the release binaries (cargo build --release -p reactor-bench; cargo
build --release --example http_hello) under $CARGO_TARGET_DIR, wrk and
nginx. Both servers run with the defaults of http_hello: idle timeout 60 s,
request timeout 10 s (nginx: keepalive_timeout 60s, client_header_timeout
10s), 10,000 connections."""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from attack_servers import bench_binary, cpu_seconds, fd_count, free_port, http_hello, nginx, raise_nofile

SOURCES = "127.0.0.10-127.0.0.13"
RAMP, QUIET = 4.0, 3.0

def slowloris(port, slow, seconds, silent, reconnect=True, sources=SOURCES):
    argv = [bench_binary(), "slowloris", f"127.0.0.1:{port}", "-c", str(slow), "--interval", "1s",
            "-D", f"{seconds}s", "--json", "--source", sources]
    if silent: argv.append("--silent")
    if reconnect: argv.append("--reconnect")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)]

def wrk(port, seconds, delay_ms=0):
    """wrk, 1 thread, 50 connections; with delay_ms, each connection waits
    that long between a reply and its next request (a paced load, at most
    50,000 / delay_ms requests/s, that saturates neither side)."""
    argv = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency"]
    if delay_ms:
        script = os.path.join(tempfile.gettempdir(), f"wrk-delay-{delay_ms}.lua")
        with open(script, "w") as f:
            f.write(f"function delay()\n  return {delay_ms}\nend\n")
        argv += ["-s", script]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "90", "99"):
        result[f"p{pct}_ms"] = ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in errors.groups()) if errors else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    return result

def measure(server, condition, slow, wrk_seconds, delay_ms):
    attack = None
    if condition != "none":
        attack = slowloris(server.port, slow, RAMP + QUIET + wrk_seconds + 3, silent=condition == "silent")
    time.sleep(RAMP)
    c0 = cpu_seconds(server.pid); time.sleep(QUIET); c1 = cpu_seconds(server.pid)
    fds = fd_count(server.pid)
    t_wrk = RAMP + QUIET
    result = wrk(server.port, wrk_seconds, delay_ms)
    c2 = cpu_seconds(server.pid)
    result.update(server=server.name, condition=condition, fds=fds, quiet_cpu_pct=100 * (c1 - c0) / QUIET,
                  cpu_us_per_req=1e6 * (c2 - c1) / max(result["requests"], 1))
    if attack:
        report = json.loads(attack.communicate()[0])
        during = [s["open"] for s in report["timeline"] if t_wrk <= s["t_s"] <= t_wrk + wrk_seconds]
        result.update(slow_open_min=min(during), slow_open_max=max(during),
                      slow_closed=report["closed_eof"] + report["closed_reset"],
                      slow_connect_failed=report["connect_refused"] + report["connect_timed_out"]
                      + report["connect_other"])
    time.sleep(1.0)
    return result

def med(rows, key):
    return statistics.median(r[key] for r in rows)

def load(args):
    servers = [http_hello(free_port()), nginx(free_port())]
    conditions = ["none", "trickle", "silent"]
    rows = []
    try:
        for rnd in range(args.rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            conds = conditions[rnd % 3:] + conditions[:rnd % 3]
            for server in order:
                for condition in conds:
                    row = measure(server, condition, args.slow, args.wrk_seconds, args.delay_ms)
                    row["round"] = rnd
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.out:
                        with open(args.out, "a") as f: f.write(json.dumps(row) + "\n")
    finally:
        for server in servers: server.stop()
    summarize(rows)

def ratio_text(values):
    """Median, and the range over rounds."""
    values = sorted(values)
    return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"

def summarize(rows):
    print("\n| server | attack | req/s | p50 ms | p99 ms | server CPU µs/req | server CPU, attack alone "
          "| slow conns open during wrk (min) | wrk errors | req/s vs no attack | p99 vs no attack "
          "| CPU/req vs no attack |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("http_hello", "nginx"):
        base = {r["round"]: r for r in rows if r["server"] == name and r["condition"] == "none"}
        for condition in ("none", "trickle", "silent"):
            sel = [r for r in rows if r["server"] == name and r["condition"] == condition and r["round"] in base]
            if not sel: continue
            ratios = [ratio_text(r[k] / base[r["round"]][k] for r in sel) if condition != "none" else "1"
                      for k in ("rps", "p99_ms", "cpu_us_per_req")]
            slow_open = min(r.get("slow_open_min", 0) for r in sel)
            errors = sum(r["socket_errors"] + r["non_2xx"] for r in sel)
            print(f"| {name} | {condition} | {med(sel, 'rps'):,.0f} | {med(sel, 'p50_ms'):.2f} | {med(sel, 'p99_ms'):.2f} "
                  f"| {med(sel, 'cpu_us_per_req'):.2f} | {med(sel, 'quiet_cpu_pct'):.1f}% | {slow_open:,} | {errors} "
                  f"| {' | '.join(ratios)} |")
    print("\nhttp_hello / nginx, median (range) of the per-round ratios:")
    for condition in ("none", "trickle", "silent"):
        pairs = [(a, b) for a in rows for b in rows if a["round"] == b["round"] and a["condition"] == condition
                 == b["condition"] and a["server"] == "http_hello" and b["server"] == "nginx"]
        if pairs:
            print(f"  {condition}: req/s {ratio_text(a['rps'] / b['rps'] for a, b in pairs)}, "
                  f"p99 {ratio_text(a['p99_ms'] / b['p99_ms'] for a, b in pairs)}, "
                  f"CPU/req {ratio_text(a['cpu_us_per_req'] / b['cpu_us_per_req'] for a, b in pairs)}")
    print(f"\n{len({r['round'] for r in rows})} rounds")

def lifetimes(args):
    servers = [http_hello(free_port()), nginx(free_port())]
    try:
        for silent in (False, True):
            attacks = [(s, slowloris(s.port, args.slow, args.seconds, silent, reconnect=False, sources=src))
                       for s, src in zip(servers, ("127.0.0.10-127.0.0.13", "127.0.0.14-127.0.0.17"))]
            for server, attack in attacks:
                r = json.loads(attack.communicate()[0])
                row = {"server": server.name, "mode": "silent" if silent else "trickle", "connected": r["connected"],
                       "closed_eof": r["closed_eof"], "closed_reset": r["closed_reset"],
                       "open_at_end": r["open_at_end"], "lifetime": r["lifetime"], "replies": r["replies"],
                       "bytes_sent": r["bytes_sent"],
                       "timeline": [(s["t_s"], s["open"]) for s in r["timeline"]][::5]}
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f: f.write(json.dumps(row) + "\n")
            time.sleep(2)
    finally:
        for server in servers: server.stop()

def probe(port):
    """100 normal clients, one request each: the storm's outcomes."""
    out = subprocess.run([bench_binary(), "storm", f"127.0.0.1:{port}", "-c", "100", "--request",
                          r"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "--served", "HTTP/1.1 200", "--refused",
                          "HTTP/1.1 503", "--hold", "0s", "--timeout", "5s", "--json"],
                         capture_output=True, text=True).stdout
    outcomes = json.loads(out)["outcomes"]
    return {k: v for k, v in outcomes.items() if v and not isinstance(v, dict)}

def served_share(outcomes):
    """Clients that got their answer (whatever the server did with the
    connection afterwards), of all."""
    served = sum(v for k, v in outcomes.items() if k.startswith("served"))
    return served / max(sum(outcomes.values()), 1)

def lockout(args):
    servers = [http_hello(free_port(), *args.hello_args.split())]
    if not args.hello_only:
        servers.append(nginx(free_port()))
    try:
        for rnd, silent in enumerate((False, True) if not args.silent_only else (True,)):
            for server in (servers if rnd % 2 == 0 else servers[::-1]):
                attack = slowloris(server.port, args.slow, 50, silent)
                time.sleep(10)
                totals, t_end = {}, time.time() + 30
                while time.time() < t_end:
                    for k, v in probe(server.port).items():
                        totals[k] = totals.get(k, 0) + v
                    time.sleep(2)
                report = json.loads(attack.communicate()[0])
                row = {"server": server.name, "args": args.hello_args if server.name == "http_hello" else "",
                       "mode": "silent" if silent else "trickle", "slow": args.slow,
                       "probe_outcomes": totals, "served_share": served_share(totals),
                       "slow_open_max": report["open_max"], "slow_connects": report["connects_started"],
                       "slow_replies": report["replies"]}
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f: f.write(json.dumps(row) + "\n")
                time.sleep(2)
    finally:
        for server in servers: server.stop()

def lockout_summary(rows):
    print("| server | slow connections | normal clients served (median share, each run) | their outcomes, all runs |")
    print("|---|---|---|---|")
    keys = []
    for r in rows:
        key = (r["server"] + (" " + r["args"] if r.get("args") else ""), r["mode"], r["slow"])
        if key not in keys: keys.append(key)
    for key in keys:
        sel = [r for r in rows if (r["server"] + (" " + r["args"] if r.get("args") else ""), r["mode"], r["slow"]) == key]
        shares = ", ".join(f"{served_share(r['probe_outcomes']):.0%}" for r in sel)
        totals = {}
        for r in sel:
            for k, v in r["probe_outcomes"].items(): totals[k] = totals.get(k, 0) + v
        outcomes = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1]))
        print(f"| {key[0]} | {key[2]:,} {key[1]} | {statistics.median(served_share(r['probe_outcomes']) for r in sel):.0%} ({shares}) "
              f"| {outcomes} |")

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    l = sub.add_parser("load"); l.add_argument("--rounds", type=int, default=5)
    l.add_argument("--slow", type=int, default=5000); l.add_argument("--wrk-seconds", type=int, default=10)
    l.add_argument("--delay-ms", type=int, default=0, help="wrk waits this long between a reply and the next request")
    l.add_argument("--out")
    t = sub.add_parser("lifetimes"); t.add_argument("--slow", type=int, default=5000)
    t.add_argument("--seconds", type=int, default=75); t.add_argument("--out")
    o = sub.add_parser("lockout"); o.add_argument("--slow", type=int, default=12000); o.add_argument("--out")
    o.add_argument("--hello-args", default="", help="more options for http_hello, e.g. '--idle-timeout 10'")
    o.add_argument("--hello-only", action="store_true"); o.add_argument("--silent-only", action="store_true")
    sub.add_parser("summary").add_argument("file")
    args = p.parse_args()
    if args.what == "summary":
        rows = [json.loads(line) for line in open(args.file)]
        return lockout_summary(rows) if rows and "probe_outcomes" in rows[0] else summarize(rows)
    raise_nofile()
    {"load": load, "lifetimes": lifetimes, "lockout": lockout}[args.what](args)

if __name__ == "__main__":
    main()
