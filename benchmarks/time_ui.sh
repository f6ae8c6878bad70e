#!/bin/bash
# Seconds from `competition ui ARGS` until the address it prints answers.
# usage: benchmarks/time_ui.sh PORT [ARGS...], e.g. benchmarks/time_ui.sh 5000 data/demo/demo-nuclei
# A cold start (the first after an install: Python compiles MLflow's bytecode) is simulated
# with PYTHONPYCACHEPREFIX=$(mktemp -d) in front.
set -u
port=$1; shift
log=$(mktemp)
start=$(date +%s.%N)
competition ui "$@" --port "$port" > "$log" 2>&1 &
pid=$!
url=""
while [ -z "$url" ]; do
    kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
    url=$(grep -o "http://[^ ]*" "$log" | head -1)
    sleep 0.05
done
until curl -sf -o /dev/null "$url"; do sleep 0.05; done
end=$(date +%s.%N)
echo "$url answered after $(echo "$end - $start" | bc) s"
kill -TERM $pid; wait $pid; rm -f "$log"
