#!/usr/bin/env bash
# Instructions per echoed message of an echo binary, under callgrind:
# the difference between a run of 5,000 and one of 25,000 ping-pong
# messages, divided by 20,000, so start-up and shutdown cancel out.
# usage: echo_instructions.sh ECHO_BINARY BENCH_BINARY PORT
set -eu
echo_bin=$1; bench=$2; port=$3
total() { # messages -> total Ir
  local n=$1
  local out=/tmp/cg.$$.$n
  valgrind --tool=callgrind --callgrind-out-file=$out "$echo_bin" 127.0.0.1:$port 2>/tmp/cg.log.$$ &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" /tmp/cg.log.$$ 2>/dev/null && break; sleep 0.2; done
  "$bench" 127.0.0.1:$port -c 10 -n $n -w 0s -q --reply-timeout 10s --json >/tmp/cg.bench.$$ 2>/dev/null || true
  grep -o '"sent":[0-9]*\|"received":[0-9]*' /tmp/cg.bench.$$ | tr '\n' ' ' >&2; echo >&2
  kill -INT $pid; wait $pid || true
  grep -E "^(summary|totals):" $out | head -1 | awk '{print $2}'
  rm -f $out /tmp/cg.log.$$ /tmp/cg.bench.$$
}
a=$(total 5000); b=$(total 25000)
echo "Ir: $a (5000 msgs), $b (25000 msgs); per message: $(( (b - a) / 20000 ))"
