#!/usr/bin/env bash
# User-space instructions per echoed message of each comparison server
# (`reactor-bench serve PEER`), counted by callgrind: deterministic, so
# unaffected by a noisy machine. Each figure is the difference between a run
# of 2,000 and one of 7,000 messages, divided by 5,000, so start-up,
# connection set-up and shutdown cancel out.
#
# Two regimes, because per-turn costs (epoll_wait, timers, the clock) are
# shared by the messages of a turn:
#   rate:      100 connections, 1,000 messages/s in all: a turn or so per message;
#   ping-pong: 10 connections, as fast as the slowed server answers: many per turn.
#
# usage: peer_instructions.sh [PEERS] [PORT]     (default: reactor,tokio,mio,epoll 9470)
# needs: valgrind, a release build of reactor-bench (cargo build --release -p reactor-bench)
# optional: OUT=DIR keeps the callgrind files (for callgrind_annotate) in DIR.
set -eu
peers=${1:-reactor,tokio,mio,epoll}
port=${2:-9470}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH:-$root/target/release/reactor-bench}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

# total PEER MESSAGES NAME LOAD... -> total instructions of the server's run
total() {
    local peer=$1 n=$2 name=$3
    shift 3
    local file=$out/callgrind.$peer.$name.$n
    valgrind --tool=callgrind --callgrind-out-file="$file" "$bench" serve "$peer" "127.0.0.1:$port" \
        >"$out/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 150); do
        ss -ltn | grep -q "127.0.0.1:$port " && break
        sleep 0.2
    done
    if ! "$bench" "127.0.0.1:$port" "$@" -n "$n" -w 0s -q --reply-timeout 10s >"$out/load.log" 2>&1; then
        echo "load on $peer failed:" >&2
        cat "$out/load.log" >&2
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    grep -E "^(summary|totals):" "$file" | head -1 | awk '{print $2}'
}

printf "%-8s %14s %14s\n" peer "rate regime" "ping-pong"
for peer in ${peers//,/ }; do
    row=$(printf "%-8s" "$peer")
    for regime in rate pingpong; do
        if [ "$regime" = rate ]; then load=(-c 100 --mode rate --rate 1000); else load=(-c 10); fi
        a=$(total "$peer" 2000 "$regime" "${load[@]}")
        b=$(total "$peer" 7000 "$regime" "${load[@]}")
        row="$row $(printf "%14d" $(((b - a) / 5000)))"
    done
    echo "$row"
done
echo "(instructions per message; callgrind files in $out)"
