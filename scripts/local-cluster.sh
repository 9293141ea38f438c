#!/usr/bin/env bash
# Start a 3-coordinator Croft cluster and one agent on 127.0.0.1, for trying
# failover on one machine. Ctrl-C stops everything it started.
#   scripts/local-cluster.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
data=${1:-./croft-local}
mkdir -p "$data"
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
  echo "$id: pid $! http://127.0.0.1:$http (log $data/$id.log)"
}
first=()
[ -d "$data/c1" ] || first=(--bootstrap)
start c1 19211 19212 "${first[@]}"
# c1 writes the farm's admin token when it bootstraps; the others join with
# it, and the agent and the CLI below use it.
token="$data/c1/admin.token"
for _ in $(seq 100); do [ -s "$token" ] && break; sleep 0.1; done
[ -s "$token" ] || { echo "no admin token in $token (see $data/c1.log)" >&2; exit 1; }
join=()
[ -d "$data/c2" ] || join=(--join http://127.0.0.1:19211 --token-file "$token")
start c2 19221 19222 "${join[@]}"
start c3 19231 19232 "${join[@]}"
bin/croft agent --coordinator http://127.0.0.1:19211,http://127.0.0.1:19221,http://127.0.0.1:19231 \
  --name local-agent --data-dir "$data/agent" --token-file "$token" >>"$data/agent.log" 2>&1 &
pids+=($!)
echo "agent: pid $! (log $data/agent.log)"
sleep 3
bin/croft cluster status --coordinator http://127.0.0.1:19221 --token-file "$token" || true
echo "admin token: $token    e.g. export CROFT_TOKEN=\$(cat $token)"
echo "Ctrl-C to stop."
wait
