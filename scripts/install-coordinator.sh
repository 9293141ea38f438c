#!/usr/bin/env bash
# Install (or remove) a Croft coordinator as a systemd service.
#
#   sudo scripts/install-coordinator.sh --node-id c1 --http-addr 10.0.0.1:19211 \
#        --raft-addr 10.0.0.1:19212 (--bootstrap | --join URL[,URL...] | --recover PEERS) \
#        --token-file admin.token \
#        [--data-dir /var/lib/croft] [--tls-cert F --tls-key F] [--ca-cert F] \
#        [--raft-tls-cert F --raft-tls-key F --raft-tls-ca F] [--binary bin/croft] \
#        [--user croft] [--root DIR] [--no-start]
#   sudo scripts/install-coordinator.sh --uninstall [--purge] [--data-dir D] [--root DIR] [--no-start]
#
# The token file holds the farm's admin token, installed as
# /etc/croft/admin.token (mode 0600). With --bootstrap (the first coordinator
# of a new farm) it is the secret of the farm's first admin token
# (--bootstrap-token-file; make one with
#   printf 'croft_%s\n' "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" > admin.token
# ); with --join it is the admin token the join is made with. The binary goes
# to /usr/local/bin/croft, the unit to
# /etc/systemd/system/croft-coordinator.service, TLS files to /etc/croft/tls/;
# the unit is enabled and started.
#
# --recover PEERS starts the node with `croft coordinator --recover PEERS`
# (a lost quorum, or a restore from a snapshot copied into the data
# directory; see docs/OPERATIONS.md): applied once, the file is renamed and
# later starts go on normally.
#
# --bootstrap and --join only act on an empty data directory, so they stay in
# the unit: a restart on existing state ignores them. A coordinator whose data
# directory was wiped must be installed again with --join (never
# --bootstrap: that would start a second farm).
#
# --root DIR installs into DIR instead of /, the unit naming the final paths;
# no user is created and no file chowned. --no-start makes no systemctl call.
# --uninstall stops and disables the service, removes the unit, the token and
# TLS copies and (unless the agent's unit is installed too) the binary; the
# data directory is kept unless --purge is given.
set -euo pipefail
recover="" nodeid="" httpaddr="" raftaddr="" bootstrap=0 join="" token="" datadir="/var/lib/croft" user="croft" root=""
tlscert="" tlskey="" cacert="" rtlscert="" rtlskey="" rtlsca=""
binary="$(dirname "$0")/../bin/croft" start=1 uninstall=0 purge=0
die() { echo "install-coordinator: $*" >&2; exit 2; }
prog=install-coordinator
# shellcheck source=install-lib.sh
. "$(dirname "$0")/install-lib.sh"
while [ $# -gt 0 ]; do
  case "$1" in
    --node-id) nodeid=${2?}; shift 2 ;;
    --http-addr) httpaddr=${2?}; shift 2 ;;
    --raft-addr) raftaddr=${2?}; shift 2 ;;
    --bootstrap) bootstrap=1; shift ;;
    --join) join=${2?}; shift 2 ;;
    --recover) recover=${2?}; shift 2 ;;
    --token-file) token=${2?}; shift 2 ;;
    --data-dir) datadir=${2?}; shift 2 ;;
    --tls-cert) tlscert=${2?}; shift 2 ;;
    --tls-key) tlskey=${2?}; shift 2 ;;
    --ca-cert) cacert=${2?}; shift 2 ;;
    --raft-tls-cert) rtlscert=${2?}; shift 2 ;;
    --raft-tls-key) rtlskey=${2?}; shift 2 ;;
    --raft-tls-ca) rtlsca=${2?}; shift 2 ;;
    --binary) binary=${2?}; shift 2 ;;
    --user) user=${2?}; shift 2 ;;
    --root) root=${2?}; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -z "$root" ] || root=$(cd "$root" && pwd) || die "no directory $root"
case "$datadir" in /?*) ;; *) die "--data-dir must be an absolute path other than /" ;; esac
unit=/etc/systemd/system/croft-coordinator.service

if [ "$uninstall" = 1 ]; then
  if [ "$start" = 1 ]; then
    systemctl disable --now croft-coordinator 2>/dev/null || true
  fi
  rm -f "$root$unit" "$root/etc/croft/admin.token"
  rm -rf "$root/etc/croft/tls"
  [ -e "$root/etc/systemd/system/croft-agent.service" ] || rm -f "$root/usr/local/bin/croft"
  rmdir "$root/etc/croft" 2>/dev/null || true
  if [ "$purge" = 1 ]; then
    rm -rf "$root$datadir"
  else
    echo "install-coordinator: kept the data directory $root$datadir (--purge removes it)"
  fi
  [ "$start" = 0 ] || systemctl daemon-reload
  echo "install-coordinator: removed croft-coordinator"
  exit 0
fi

[ -n "$nodeid" ] || die "--node-id is required"
[ -n "$httpaddr" ] || die "--http-addr is required (host:port the API listens on, reachable by agents)"
[ -n "$raftaddr" ] || die "--raft-addr is required (host:port for Raft, reachable by the other coordinators)"
[ $((bootstrap + ${join:+1}0 / 10 + ${recover:+1}0 / 10)) = 1 ] ||
  die "one of --bootstrap (the first coordinator), --join URL (the others) or --recover PEERS is required"
[ -z "$recover" ] || [ "${recover:0:1}" = / ] || die "--recover needs an absolute path"
[ -n "$token" ] || die "--token-file is required (the farm's admin token)"
[ -s "$token" ] || die "no token in $token"
[ -x "$binary" ] || die "no croft binary at $binary (run make build)"
{ [ -n "$tlscert" ] && [ -n "$tlskey" ]; } || { [ -z "$tlscert" ] && [ -z "$tlskey" ]; } || die "--tls-cert and --tls-key go together"
[ -z "$cacert" ] || [ -n "$tlscert" ] || die "--ca-cert needs --tls-cert"
{ [ -n "$rtlscert" ] && [ -n "$rtlskey" ] && [ -n "$rtlsca" ]; } || { [ -z "$rtlscert$rtlskey$rtlsca" ]; } ||
  die "--raft-tls-cert, --raft-tls-key and --raft-tls-ca go together"
for f in "$tlscert" "$tlskey" "$cacert" "$rtlscert" "$rtlskey" "$rtlsca"; do
  [ -z "$f" ] || [ -s "$f" ] || die "no file $f"
done
for v in "$nodeid" "$httpaddr" "$raftaddr" "$join" "$recover" "$datadir" "$user"; do
  [[ "$v" != *$'\n'* ]] || die "arguments may not contain newlines"
done

install_base
install -m 0600 "${owner[@]}" "$token" "$root/etc/croft/admin.token"
args=(coordinator --node-id "$nodeid" --data-dir "$datadir" --http-addr "$httpaddr" --raft-addr "$raftaddr")
if [ "$bootstrap" = 1 ]; then
  args+=(--bootstrap --bootstrap-token-file /etc/croft/admin.token)
elif [ -n "$recover" ]; then
  args+=(--recover "$recover")
else
  args+=(--join "$join" --token-file /etc/croft/admin.token)
fi
# tlsfile FLAG FILE MODE: copy FILE into /etc/croft/tls and pass it as FLAG.
tlsfile() {
  [ -n "$2" ] || return 0
  install -d -m 0755 "$root/etc/croft/tls"
  install -m "$3" "${owner[@]}" "$2" "$root/etc/croft/tls/${1#--}.pem"
  args+=("$1" "/etc/croft/tls/${1#--}.pem")
}
tlsfile --tls-cert "$tlscert" 0644
tlsfile --tls-key "$tlskey" 0600
tlsfile --ca-cert "$cacert" 0644
tlsfile --raft-tls-cert "$rtlscert" 0644
tlsfile --raft-tls-key "$rtlskey" 0600
tlsfile --raft-tls-ca "$rtlsca" 0644


write_unit "$unit" <<UNIT
# Written by scripts/install-coordinator.sh; remove with --uninstall.
[Unit]
Description=Croft render-farm coordinator ($nodeid)
Documentation=https://github.com/croftfarm/croft/blob/main/docs/OPERATIONS.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$user
ExecStart=$(exec_start "${args[@]}")
# A crash restarts it. So does the exit of a coordinator that met an entry
# of a newer release (it stops rather than diverge): upgrade its binary.
Restart=on-failure
RestartSec=2
# SIGTERM hands the leadership over and closes the Raft log cleanly.
KillSignal=SIGTERM
TimeoutStopSec=30
# Every API connection is a file; --max-conns defaults to 80% of this limit.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT

start_unit croft-coordinator
