#!/usr/bin/env bash
# Network-partition test of a Croft cluster in Docker (`make e2e-docker`).
#
# Builds the image offline (deploy/build-image.sh), starts deploy/docker-compose.yml
# (3 coordinators, 3 agents) plus a client container under a per-run project
# name, and while three streams of jobs (`echo TOKEN >> /shared/runs.txt`)
# are submitted, one to each coordinator, fires a burst of writes at the Raft
# leader and cuts it off the Raft network with `docker network disconnect`.
# Its HTTP side stays reachable, so clients (and the agents) can still send
# it requests: the minority side of a split. It checks that
#   (a) the isolated node acknowledges no write (503 or a timeout, never 200);
#   (b) the other two elect a leader and acknowledge writes; (c) how long
#       until the first acknowledged write (a probe writes every 0.1 s);
# then reconnects the node (same IP) and checks that it is a follower, that
# the three coordinators report the same state digest, that every job is
# FINISHED, and that every acknowledged token is in /shared/runs.txt exactly
# once (none missing, none duplicated), and that writes refused by the
# isolated node never ran.
#
# Exit 0 on success, or when no Docker engine answers or busybox-static is
# missing (prints SKIP); 1 on any
# violation. Always tears down (compose down -v --remove-orphans) and removes
# the image tag it built. Total time is bounded (E2E_MAX_SECONDS, default 420).
#
# Environment: E2E_MAX_SECONDS; CROFT_API_NET / CROFT_RAFT_NET (two /24
# prefixes such as 172.29.40 and 172.29.41) to pin the subnets instead of
# picking free random ones; E2E_KEEP_LOGS=1 keeps the logs directory on success.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! timeout 30 docker info >/dev/null 2>&1; then
  echo "SKIP: no Docker engine answers; the partition test did not run"
  exit 0
fi
# The image takes Debian's static busybox for a shell (deploy/build-image.sh).
busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ]; then
  echo "SKIP: busybox-static is not installed (apt-get install busybox-static); the partition test did not run"
  exit 0
fi
if LC_ALL=C grep -aq -e '/lib64/ld-linux' -e '/lib/ld-linux' -e '/lib/ld-musl' "$busybox"; then
  echo "SKIP: busybox-static is not installed (apt-get install busybox-static): $busybox is dynamically linked; the partition test did not run"
  exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif timeout 30 docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  echo "FAIL: a Docker engine answers but neither docker-compose nor 'docker compose' is installed; the partition test did not run"
  exit 1
fi

max_seconds=${E2E_MAX_SECONDS:-420}
project="croft-e2e-$$"
tag="croft-e2e:$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/croft-e2e.XXXXXX")
export CROFT_IMAGE="$tag"
nodes=(c1 c2 c3)
agents=(a1 a2 a3)
started=0   # compose up was attempted: tear down
built=0     # the image tag exists: remove it
watchdog=""
violations=()
summary=()

log() { printf '%s e2e-docker: %s\n' "$(date +%H:%M:%S)" "$*"; }
violation() { violations+=("$*"); log "VIOLATION: $*"; }
die() { violations+=("$*"); log "FAIL: $*"; exit 1; }

compose() {
  timeout 300 "${compose_cmd[@]}" -p "$project" -f deploy/docker-compose.yml -f "$work/e2e.yml" "$@"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$watchdog" ]; then kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null; fi
  if [ "$started" = 1 ]; then
    if [ "$rc" != 0 ]; then
      compose logs --no-color --timestamps >"$work/compose.log" 2>&1
      for n in "${nodes[@]}" "${agents[@]}"; do
        echo "----- last lines of $n -----"
        grep -E "^${n}[-_]" "$work/compose.log" | tail -n 25
      done
    fi
    log "tearing down $project"
    compose down -v --remove-orphans -t 5 >"$work/down.log" 2>&1 || { cat "$work/down.log"; rc=1; }
  fi
  if [ "$built" = 1 ]; then docker image rm -f "$tag" >/dev/null 2>&1; fi
  if [ "$rc" = 0 ] && [ "${E2E_KEEP_LOGS:-0}" != 1 ]; then
    rm -rf "$work"
  else
    echo "logs kept in $work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "stopped (time limit of ${max_seconds}s or SIGTERM)"; exit 143' TERM

# Watchdog: the whole run is bounded; SIGTERM makes the trap tear down.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$max_seconds" &
  sp=$!
  wait "$sp"
  kill -TERM $$ 2>/dev/null
) &
watchdog=$!

# ---------------------------------------------------------------- image
log "building image $tag"
deploy/build-image.sh "$tag" || die "image build failed"
built=1

# The test adds a client container (busybox wget) on the api network; it
# exits by itself after 15 minutes even if a run is killed without cleanup.
cat >"$work/e2e.yml" <<'EOF'
version: "2.4"
services:
  client:
    image: ${CROFT_IMAGE}
    entrypoint: ["/bin/sleep"]
    command: ["900"]
    stop_signal: SIGKILL
    restart: "no"
    networks: [api]
    volumes: ["shared:/shared"]
    environment:
      CROFT_ADMIN_TOKEN: ${CROFT_ADMIN_TOKEN}
EOF
# The farm's first admin token: c1 creates it with this secret, the others
# use it (deploy/docker-compose.yml). A fresh one per run.
export CROFT_ADMIN_TOKEN="croft_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"

# ---------------------------------------------------------------- up
# Static IPs need fixed subnets; pick two free random /24s in 172.16/12 per
# run (retry when Docker reports an overlap) so parallel runs do not collide.
pinned=0
[ -n "${CROFT_API_NET:-}" ] && [ -n "${CROFT_RAFT_NET:-}" ] && pinned=1
routes=$(ip -4 route 2>/dev/null || true)
up=0
for attempt in 1 2 3 4 5 6; do
  if [ "$pinned" = 0 ]; then
    x=$((16 + RANDOM % 16)) y=$((RANDOM % 127 * 2))
    export CROFT_API_NET="172.$x.$y" CROFT_RAFT_NET="172.$x.$((y + 1))"
    if grep -qE "^172\.$x\.($y|$((y + 1)))\.|^172\.$x\.0\.0/16" <<<"$routes"; then continue; fi
  fi
  log "starting $project (api ${CROFT_API_NET}.0/24, raft ${CROFT_RAFT_NET}.0/24)"
  started=1
  if compose up -d >"$work/up.log" 2>&1; then
    up=1
    break
  fi
  if [ "$pinned" = 0 ] && grep -qiE 'overlap|address already in use|in use' "$work/up.log"; then
    compose down -v --remove-orphans -t 1 >/dev/null 2>&1
    continue
  fi
  cat "$work/up.log"
  die "compose up failed"
done
[ "$up" = 1 ] || { cat "$work/up.log" 2>/dev/null; die "compose up failed (no free subnet after 6 attempts)"; }

client=$(compose ps -q client)
[ -n "$client" ] || die "no client container"
declare -A cid api_ip raft_ip
for i in 1 2 3; do
  n=c$i
  cid[$n]=$(compose ps -q "$n")
  api_ip[$n]="${CROFT_API_NET}.1$i"
  raft_ip[$n]="${CROFT_RAFT_NET}.1$i"
done
raft_net=$(docker network ls -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.network=raft)
[ -n "$raft_net" ] || die "raft network not found"

# Helpers: everything talks to the cluster from the client container.
cx() { timeout 60 docker exec "$client" "$@"; }
# The farm's admin token goes as ?token= (busybox wget sends no header we
# could not also put in the URL, and the URL is the same for every helper).
auth() { case "$1" in *\?*) echo "$1&token=$CROFT_ADMIN_TOKEN" ;; *) echo "$1?token=$CROFT_ADMIN_TOKEN" ;; esac; }
get() { cx timeout 10 wget -q -O - "http://${api_ip[$1]}:19211$(auth "$2")" 2>/dev/null; }
clock() { cx cat /proc/uptime | cut -d' ' -f1; } # container clock, 10 ms
jstr() { grep -o "\"$1\":\"[^\"]*\"" <<<"$2" | head -n1 | sed 's/^.*:"\(.*\)"$/\1/'; }
jnum() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -n1 | sed 's/^.*://'; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
  local limit=$1 what=$2 end=$((SECONDS + $1))
  shift 2
  while ! "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then
      violation "timed out after ${limit}s waiting for: $what"
      return 1
    fi
    sleep 0.5
  done
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# leader_of NODE...: prints the leader id if every given node reports the
# same non-empty leader that is itself among them and says it is Leader.
leader_of() {
  local n st l="" first=1
  for n in "$@"; do
    st=$(get "$n" /cluster/status) || return 1
    if [ "$first" = 1 ]; then l=$(jstr leader_id "$st"); first=0; fi
    [ -n "$l" ] && [ "$(jstr leader_id "$st")" = "$l" ] || return 1
  done
  st=$(get "$l" /cluster/status) || return 1
  [ "$(jstr state "$st")" = Leader ] || return 1
  for n in "$@"; do [ "$n" = "$l" ] && { echo "$l"; return 0; }; done
  return 1
}
cluster_formed() {
  local n st
  for n in "${nodes[@]}"; do
    st=$(get "$n" /cluster/status) || return 1
    [ "$(grep -o '"suffrage":"Voter"' <<<"$st" | wc -l)" = 3 ] || return 1
  done
  leader_of "${nodes[@]}" >/dev/null
}
agents_registered() {
  local ws a
  ws=$(get c1 /api/workers) || return 1
  for a in "${agents[@]}"; do grep -q "\"name\":\"$a\"" <<<"$ws" || return 1; done
}

log "waiting for the cluster to form and the agents to register"
wait_for 90 "3 voters agreeing on a leader" cluster_formed || exit 1
wait_for 60 "agents a1 a2 a3 registered" agents_registered || exit 1

# ---------------------------------------------------------------- streams
# One stream per coordinator, each in the client container: submit a job,
# log "token t0 t1 ACK id | FAIL reason | TIMEOUT" (t0/t1: /proc/uptime when
# the request was sent and when it ended), pause, repeat until /tmp/stop.
cat >"$work/stream.sh" <<'EOF'
n=$1 ip=$2 i=0
while [ ! -e /tmp/stop ] && [ "$i" -lt 2000 ]; do
  i=$((i + 1))
  tok="$n-$i"
  read -r t0 _ </proc/uptime
  out=$(timeout 20 wget -q -O - --post-data "title=$tok&cmd=echo+$tok+%3E%3E+/shared/runs.txt" "http://$ip:19211/api/addjob?token=$CROFT_ADMIN_TOKEN" 2>&1)
  rc=$?
  read -r t1 _ </proc/uptime
  case "$rc:$out" in
  0:*[!0-9]* | 0:) r="FAIL unexpected_reply_$(echo "$out" | tr -cs 'A-Za-z0-9.:-' _)" ;;
  0:*) r="ACK $out" ;;
  143:*) r="TIMEOUT -" ;;
  *) r="FAIL $(echo "$out" | tr -cs 'A-Za-z0-9.:-' _)" ;;
  esac
  echo "$tok $t0 $t1 $r" >>"/tmp/stream-$n.log"
  sleep 0.25
done
touch "/tmp/stream-$n.done"
EOF
# fire.sh NAME COUNT INTERVAL STOP_ON_ACK IP...: COUNT writes, one every
# INTERVAL seconds, each in the background (none waits for another), to the
# IPs in turn; with STOP_ON_ACK=1 it stops at the first acknowledgement.
# Used twice around the cut:
#   burst: 40 writes to the leader, 20 ms apart, spanning the disconnect, so
#          that writes are in flight (appended, maybe replicated, not yet
#          acknowledged) at the moment of the cut;
#   probe: from the cut on, a new write every 0.1 s to the other two until one
#          is acknowledged (at most 30 s): (c), how soon a client can write
#          again. (The sequential streams may sit in a request for up to
#          LeaderWait, 5 s, when it was forwarded to the old leader.)
cat >"$work/fire.sh" <<'EOF'
name=$1 count=$2 iv=$3 stop=$4
shift 4
i=0
while [ "$i" -lt "$count" ]; do
  [ "$stop" = 1 ] && [ -e "/tmp/$name.acked" ] && break
  i=$((i + 1))
  eval "ip=\${$(((i - 1) % $# + 1))}"
  (
    tok="$name-$i"
    read -r t0 _ </proc/uptime
    out=$(timeout 20 wget -q -O - --post-data "title=$tok&cmd=echo+$tok+%3E%3E+/shared/runs.txt" "http://$ip:19211/api/addjob?token=$CROFT_ADMIN_TOKEN" 2>&1)
    rc=$?
    read -r t1 _ </proc/uptime
    case "$rc:$out" in
    0:*[!0-9]* | 0:) r="FAIL unexpected_reply" ;;
    0:*) r="ACK $out" && touch "/tmp/$name.acked" ;;
    143:*) r="TIMEOUT -" ;;
    *) r="FAIL $(echo "$out" | tr -cs 'A-Za-z0-9.:-' _)" ;;
    esac
    echo "$tok $t0 $t1 $r" >>"/tmp/$name.log"
  ) &
  sleep "$iv"
done
wait
touch "/tmp/$name.done"
EOF
for f in stream fire; do
  docker cp "$work/$f.sh" "$client:/tmp/$f.sh" >/dev/null || die "docker cp $f.sh"
done
for n in "${nodes[@]}"; do
  cx touch "/tmp/stream-$n.log"
  docker exec -d "$client" sh /tmp/stream.sh "$n" "${api_ip[$n]}" || die "starting stream $n"
done
streams_ack() { # streams_ack MIN_T0 MIN_COUNT NODE...: each NODE's stream has MIN_COUNT ACKs sent after MIN_T0
  local since=$1 want=$2 n c
  shift 2
  for n in "$@"; do
    c=$(cx cat "/tmp/stream-$n.log" | awk -v s="$since" '$4 == "ACK" && $2 + 0 >= s + 0' | wc -l)
    [ "$c" -ge "$want" ] || return 1
  done
}
log "streams running; warming up"
wait_for 60 "every stream acknowledged 5 writes" streams_ack 0 5 "${nodes[@]}" || exit 1

# ---------------------------------------------------------------- partition
old=$(leader_of "${nodes[@]}") || die "no agreed leader before the partition"
survivors=()
for n in "${nodes[@]}"; do [ "$n" != "$old" ] && survivors+=("$n"); done
# (a) A write to the isolated node must not be acknowledged. The first one
# reaches it while it may still believe it leads; the second after a new
# leader exists elsewhere.
iso_write() { # iso_write TOKEN: prints "rc t0 t1 reply"
  cx sh -c 'read -r t0 _ </proc/uptime
    out=$(timeout 20 wget -S -q -O - --post-data "title=$1&cmd=echo+$1+%3E%3E+/shared/runs.txt" "http://$2:19211/api/addjob?token=$CROFT_ADMIN_TOKEN" 2>&1)
    rc=$?
    read -r t1 _ </proc/uptime
    echo "$rc $t0 $t1 $(echo "$out" | tr -s "\n " "  ")"' sh "$1" "${api_ip[$old]}"
}
check_iso() { # check_iso TOKEN RESULT
  local rc t0 t1 reply took
  read -r rc t0 t1 reply <<<"$2"
  took=$(fsub "$t1" "$t0")
  if [ "$rc" = 143 ]; then
    summary+=("(a) write $1 to isolated $old: no reply, timed out after ${took}s (not acknowledged)")
  elif grep -q 'HTTP/1.1 503' <<<"$reply"; then
    summary+=("(a) write $1 to isolated $old: 503 after ${took}s (not acknowledged)")
  elif [ "$rc" = 0 ]; then
    violation "isolated $old ACKNOWLEDGED write $1 (reply: $reply)"
  else
    violation "write $1 to isolated $old failed with something other than 503 or a timeout (rc $rc): $reply"
  fi
}
log "leader is $old; a burst of writes to it, and it is disconnected from the raft network"
cx touch /tmp/burst.log /tmp/probe.log
docker exec -d "$client" sh /tmp/fire.sh burst 40 0.02 0 "${api_ip[$old]}" || die "starting the burst"
sleep 0.3
t_cut0=$(clock)
docker network disconnect "$raft_net" "${cid[$old]}" || die "network disconnect failed"
# iso-1 goes at once, in the background (it may wait LeaderWait) while (b)
# is polled; then the probe starts.
iso_write iso-1 >"$work/iso-1.txt" 2>&1 &
iso1_pid=$!
t_cut=$(clock)
docker exec -d "$client" sh /tmp/fire.sh probe 300 0.1 1 "${api_ip[${survivors[0]}]}" "${api_ip[${survivors[1]}]}" || die "starting the probe"

# (b) The two others elect a leader and acknowledge writes.
new=""
find_new() { new=$(leader_of "${survivors[@]}"); }
wait_for 30 "a new leader among ${survivors[*]}" find_new || exit 1
t_new=$(clock)
log "new leader: $new"
wait_for 30 "acknowledged writes through ${survivors[*]} after the cut" streams_ack "$t_cut" 1 "${survivors[@]}" || exit 1

wait "$iso1_pid"
check_iso iso-1 "$(cat "$work/iso-1.txt")"
iso2=$(iso_write iso-2)
check_iso iso-2 "$iso2"
st=$(get "$old" /cluster/status)
iso_state=$(jstr state "$st") iso_leader=$(jstr leader_id "$st")
if [ "$iso_state" = Leader ] || [ -n "$iso_leader" ]; then
  violation "isolated $old still reports state $iso_state, leader '$iso_leader'"
fi
# Keep the cut for at least 8 s so the survivors serve a real load alone.
while awk -v a="$(clock)" -v b="$t_cut" 'BEGIN { exit !(a - b < 8) }'; do sleep 0.5; done

# ---------------------------------------------------------------- heal
log "reconnecting $old (${raft_ip[$old]}) to the raft network"
t_heal=$(clock)
docker network connect --ip "${raft_ip[$old]}" "$raft_net" "${cid[$old]}" || die "network connect failed"
healed() {
  local st
  st=$(get "$old" /cluster/status) || return 1
  [ "$(jstr state "$st")" = Follower ] && [ "$(jstr leader_id "$st")" = "$new" ]
}
wait_for 60 "$old back as a follower of $new" healed || exit 1
t_healed=$(clock)
sleep 3 # the streams go on a little across the healed cluster
cx touch /tmp/stop
streams_done() { cx sh -c '[ -e /tmp/stream-c1.done ] && [ -e /tmp/stream-c2.done ] && [ -e /tmp/stream-c3.done ] && [ -e /tmp/probe.done ] && [ -e /tmp/burst.done ]'; }
wait_for 45 "the submit streams to stop" streams_done || exit 1
log "streams stopped; waiting for every job to finish"

jobs_json=""
all_finished() {
  jobs_json=$(get "$new" /api/jobs) || return 1
  [ -n "$jobs_json" ] && ! grep -o '"state":"[A-Z]*"' <<<"$jobs_json" | grep -qv '"state":"FINISHED"'
}
wait_for 120 "every job FINISHED" all_finished
digests=""
converged() {
  local n st d i s=""
  for n in "${nodes[@]}"; do
    st=$(get "$n" "/cluster/status?digest=1") || return 1
    d=$(jstr digest "$st") i=$(jnum applied_index "$st")
    [ -n "$d" ] || return 1
    s+="$n:$i:$d "
  done
  digests=$s
  [ "$(tr ' ' '\n' <<<"$s" | grep . | cut -d: -f2- | sort -u | wc -l)" = 1 ]
}
wait_for 60 "the three coordinators to report the same applied index and digest" converged || log "digests: $digests"
final_state=$(get "$old" /cluster/status)
[ "$(jstr state "$final_state")" = Follower ] || violation "healed $old is $(jstr state "$final_state"), not a follower"

# ---------------------------------------------------------------- checks
for n in "${nodes[@]}"; do cx cat "/tmp/stream-$n.log" >"$work/stream-$n.log"; done
cx cat /tmp/probe.log >"$work/probe.log"
cx cat /tmp/burst.log >"$work/burst.log"
cat "$work"/stream-c?.log "$work/probe.log" "$work/burst.log" >"$work/streams.log"
cx sh -c 'cat /shared/runs.txt 2>/dev/null' >"$work/runs.txt"
printf '%s\n' "$jobs_json" >"$work/jobs.json"
# id<TAB>title<TAB>state of every job (compact JSON from the Coalition API).
grep -o '{"id":[0-9]*,"parent":[0-9]*,"title":"[^"]*"[^{}]*"state":"[A-Z]*"' "$work/jobs.json" |
  sed 's/^{"id":\([0-9]*\),"parent":[0-9]*,"title":"\([^"]*\)".*"state":"\([A-Z]*\)"$/\1\t\2\t\3/' >"$work/jobs.tsv"

awk -v cut="$t_cut" -v heal="$t_heal" -v old="$old" -v cut0="$t_cut0" '
  BEGIN { refused["iso-1"] = 1; refused["iso-2"] = 1 } # writes (a) sent to the isolated node
  FILENAME ~ /streams.log$/ { sent++; res[$1] = $4; t0[$1] = $2; t1[$1] = $3; id[$1] = $5; reason[$1] = $5
    if ($4 == "ACK") acks++; else if ($4 == "TIMEOUT") tmo++; else fails++
    if ($1 ~ /^burst-/) { bsent++; if ($4 == "ACK") backs++ }
    if ($4 == "ACK" && $1 ~ /^probe-/ && (first == "" || $3 + 0 < first + 0)) { first = $3; firstsent = $2 }
    if ($4 == "ACK" && $1 ~ /^c[0-9]-/ && $1 !~ "^" old "-" && $2 + 0 >= cut + 0 && (sfirst == "" || $3 + 0 < sfirst + 0)) sfirst = $3
    # Sent to the isolated node (its stream, the burst) after the cut and answered before the heal.
    if (($1 ~ "^" old "-" || $1 ~ /^burst-/) && $2 + 0 >= cut + 0 && $3 + 0 <= heal + 0) {
      isolated++
      if ($4 == "ACK") { print "VIOLATION isolated " old " acknowledged " $1 " (sent " $2 ", answered " $3 ")"; bad++ }
      else refused[$1] = 1
    }
    next }
  FILENAME ~ /jobs.tsv$/ { jobs++; if (title[$2]++) { print "VIOLATION two jobs titled " $2; bad++ }
    jobid[$2] = $1; if ($3 != "FINISHED") { print "VIOLATION job " $1 " (" $2 ") is " $3; bad++ }
    next }
  FILENAME ~ /runs.txt$/ { lines++; runs[$1]++; next }
  END {
    for (t in res) if (res[t] == "ACK") {
      if (runs[t] != 1) { print "VIOLATION acknowledged " t " appears " runs[t] + 0 " times in runs.txt"; bad++; if (runs[t] + 0 == 0) missing++ }
      if (!(t in jobid)) { print "VIOLATION acknowledged " t " has no job"; bad++ }
      else if (jobid[t] != id[t]) { print "VIOLATION acknowledged " t " got id " id[t] " but the job is " jobid[t]; bad++ }
    }
    for (t in runs) {
      if (runs[t] > 1) { print "VIOLATION " t " ran " runs[t] " times"; bad++; dup++ }
      if (!(t in jobid)) { print "VIOLATION " t " ran but there is no such job"; bad++ }
      if (t in refused) { print "VIOLATION " t " was refused by isolated " old " but ran"; bad++ }
    }
    for (t in jobid) {
      if (t in refused) { print "VIOLATION " t " was refused by isolated " old " but exists as job " jobid[t]; bad++ }
      if (runs[t] != 1) { print "VIOLATION job " jobid[t] " (" t ") ran " runs[t] + 0 " times"; bad++ }
      if (!(t in res) && t !~ /^iso-/) { print "VIOLATION job " t " was never submitted"; bad++ }
      if (t in res && res[t] != "ACK") {
        unknown_ran++
        detail = detail sprintf("SUMMARY   %s: %s %s (sent %+.2f s, answered %+.2f s from the cut); job %s exists\n", t, res[t], reason[t], t0[t] - cut0, t1[t] - cut0, jobid[t])
      }
    }
    if (first == "") { print "VIOLATION the probe got no write acknowledged after the cut"; bad++ }
    printf "SUMMARY submitted %d writes: %d acknowledged, %d refused, %d timed out\n", sent, acks, fails, tmo
    printf "SUMMARY %d jobs, all FINISHED unless reported; %d of them from unacknowledged writes (outcome unknown to the client, ran once)%s\n", jobs, unknown_ran, unknown_ran ? ":" : ""
    printf "%s", detail
    for (t in jobid) if (t ~ /^burst-/ && res[t] != "ACK") bran++
    printf "SUMMARY burst around the cut: %d writes to %s, %d acknowledged; %d of the others were nonetheless applied (committed by the new leader)\n", bsent, old, backs, bran
    printf "SUMMARY runs.txt: %d lines; acknowledged tokens missing: %d, tokens duplicated: %d\n", lines, missing + 0, dup + 0
    printf "SUMMARY writes to isolated %s (its stream and the burst) sent and answered while it was cut off: %d, none acknowledged unless reported, none applied unless reported\n", old, isolated
    if (first != "") printf "SUMMARY (c) first acknowledged write: %.2f s after the disconnect was issued (probe: a new write every 0.1 s to the other two; that one was sent at +%.2f s)\n", first - cut0, firstsent - cut0
    if (sfirst != "") printf "SUMMARY (c) the sequential streams to the other two got their first ACK at +%.2f s\n", sfirst - cut0
    printf "BAD %d\n", bad
  }' "$work/streams.log" "$work/jobs.tsv" "$work/runs.txt" >"$work/check.txt"
while read -r kind rest; do
  case $kind in
  VIOLATION) violation "$rest" ;;
  SUMMARY) summary+=("$rest") ;;
  esac
done <"$work/check.txt"
[ -s "$work/jobs.tsv" ] || violation "could not read any job from GET /api/jobs"

# Nothing crashed or restarted behind the test's back.
for n in "${nodes[@]}" "${agents[@]}"; do
  c=$(compose ps -q "$n")
  s=$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$c" 2>/dev/null)
  [ "$s" = "running 0" ] || violation "container $n: state/restarts '$s'"
done

# ---------------------------------------------------------------- report
echo
echo "=== croft docker partition test ($project) ==="
echo "cluster: ${nodes[*]}, agents ${agents[*]}; leader before the cut: $old"
echo "partition: $old disconnected from the raft network for $(fsub "$t_heal" "$t_cut0") s (HTTP side reachable)"
for s in "${summary[@]}"; do echo "$s"; done
echo "(b) new leader $new seen $(fsub "$t_new" "$t_cut0") s after the cut; isolated $old reported state $iso_state, leader '${iso_leader}'"
echo "heal: $old follower of $new $(fsub "$t_healed" "$t_heal") s after reconnecting"
echo "convergence: ${digests:-none}"
if [ "${#violations[@]}" -gt 0 ]; then
  echo "RESULT: FAIL (${#violations[@]} violations)"
  for v in "${violations[@]}"; do echo "  - $v"; done
  exit 1
fi
echo "RESULT: PASS"
