#!/usr/bin/env bash
# Start a 3-coordinator Croft cluster and one agent on 127.0.0.1, for trying
# failover on one machine. Ctrl-C stops everything it started.
#   scripts/local-cluster.sh [--base-port N] [DATA_DIR]
# The six ports (HTTP and Raft of c1, c2, c3) are N..N+5; without
# --base-port a free range is picked at random. They are printed, and kept
# in DATA_DIR/ports: a restart on the same DATA_DIR reuses them (the
# coordinators know each other by address).
set -euo pipefail
cd "$(dirname "$0")/.."
base=""
if [ "${1:-}" = --base-port ]; then
  base=${2:?--base-port needs a port number}; shift 2
  [[ "$base" =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65530 ] || { echo "--base-port: a number from 1024 to 65530" >&2; exit 2; }
fi
make -s build
data=${1:-./croft-local}
mkdir -p "$data"
# in_use PORT: something listens on 127.0.0.1:PORT.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$base" ] && [ -s "$data/ports" ]; then
  base=$(cat "$data/ports")
elif [ -z "$base" ]; then
  for _ in $(seq 50); do
    b=$((20000 + RANDOM % 4000 * 10))
    free=1
    for p in $(seq "$b" $((b + 5))); do in_use "$p" && { free=0; break; }; done
    [ "$free" = 1 ] && { base=$b; break; }
  done
  [ -n "$base" ] || { echo "no free range of 6 ports found; give --base-port" >&2; exit 1; }
fi
for p in $(seq "$base" $((base + 5))); do
  in_use "$p" && { echo "port $p is in use (another local cluster?); give another --base-port" >&2; exit 1; }
done
echo "$base" >"$data/ports"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Three coordinators share this machine: each gets its share of the cores,
# as a container with that CPU limit would (see internal/localcluster).
procs=$(( $(nproc) / 3 )); [ "$procs" -ge 1 ] || procs=1
start() { # id http raft extra...
  local id=$1 http=$2 raft=$3; shift 3
  GOMAXPROCS=${GOMAXPROCS:-$procs} bin/croft coordinator --node-id "$id" --data-dir "$data/$id" \
    --http-addr "127.0.0.1:$http" --raft-addr "127.0.0.1:$raft" "$@" >>"$data/$id.log" 2>&1 &
  pids+=($!)
  echo "$id: pid $! http://127.0.0.1:$http raft 127.0.0.1:$raft (log $data/$id.log)"
}
first=()
[ -d "$data/c1" ] || first=(--bootstrap)
start c1 "$base" $((base + 1)) "${first[@]}"
# c1 writes the farm's admin token when it bootstraps; the others join with
# it, and the agent and the CLI below use it.
token="$data/c1/admin.token"
for _ in $(seq 100); do [ -s "$token" ] && break; sleep 0.1; done
[ -s "$token" ] || { echo "no admin token in $token (see $data/c1.log)" >&2; exit 1; }
join=()
[ -d "$data/c2" ] || join=(--join "http://127.0.0.1:$base" --token-file "$token")
start c2 $((base + 2)) $((base + 3)) "${join[@]}"
start c3 $((base + 4)) $((base + 5)) "${join[@]}"
urls="http://127.0.0.1:$base,http://127.0.0.1:$((base + 2)),http://127.0.0.1:$((base + 4))"
bin/croft agent --coordinator "$urls" \
  --name local-agent --data-dir "$data/agent" --token-file "$token" >>"$data/agent.log" 2>&1 &
pids+=($!)
echo "agent: pid $! (log $data/agent.log)"
sleep 3
bin/croft cluster status --coordinator "http://127.0.0.1:$base" --token-file "$token" || true
echo "coordinators: $urls (Raft on ports $((base + 1)), $((base + 3)), $((base + 5)))"
echo "e.g. export CROFT_COORDINATOR=$urls"
echo "admin token: $token    e.g. export CROFT_TOKEN=\$(cat $token)"
echo "Ctrl-C to stop."
wait
