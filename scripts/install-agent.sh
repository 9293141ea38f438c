#!/usr/bin/env bash
# Install (or remove) the Croft agent on a render node as a systemd service.
#
#   sudo scripts/install-agent.sh --coordinator http://c1:19211,http://c2:19211,http://c3:19211 \
#        --token-file agent.token [--name NAME] [--affinity "linux,gpu"] [--slots N] \
#        [--data-dir /var/lib/croft-agent] [--ca-cert ca.pem] [--binary bin/croft] \
#        [--user croft] [--kill-on-stop] [--root DIR] [--no-start]
#   sudo scripts/install-agent.sh --uninstall [--purge] [--root DIR] [--no-start]
#
# The token is an agent token bound to this node's name, made by an admin:
#   croft token create --name render-042 --role agent --workers render-042 --projects '*'
# It is installed as /etc/croft/agent.token (mode 0600, owned by the agent's
# user). The binary goes to /usr/local/bin/croft, the unit to
# /etc/systemd/system/croft-agent.service; the unit is enabled and started.
#
# --root DIR installs into DIR instead of / (DIR/usr/local/bin/croft,
# DIR/etc/systemd/system/..., DIR/etc/croft/..., DIR/var/lib/...): the unit
# still names the final paths. With --root no user is created and no file is
# chowned. --no-start makes no systemctl call (for images and tests).
# --uninstall stops and disables the service and removes the unit, the token,
# the CA copy and (unless the coordinator's unit is installed too) the
# binary; the data directory is kept unless --purge is given.
set -euo pipefail
coordinator="" affinity="" name="" slots="" user="croft" token="" ca="" root="" datadir="/var/lib/croft-agent"
binary="$(dirname "$0")/../bin/croft" start=1 uninstall=0 purge=0 killonstop=0
die() { echo "install-agent: $*" >&2; exit 2; }
prog=install-agent
# shellcheck source=install-lib.sh
. "$(dirname "$0")/install-lib.sh"
while [ $# -gt 0 ]; do
  case "$1" in
    --coordinator) coordinator=${2?}; shift 2 ;;
    --affinity) affinity=${2?}; shift 2 ;;
    --name) name=${2?}; shift 2 ;;
    --slots) slots=${2?}; shift 2 ;;
    --data-dir) datadir=${2?}; shift 2 ;;
    --binary) binary=${2?}; shift 2 ;;
    --user) user=${2?}; shift 2 ;;
    --token-file) token=${2?}; shift 2 ;;
    --ca-cert) ca=${2?}; shift 2 ;;
    --kill-on-stop) killonstop=1; shift ;;
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
unit=/etc/systemd/system/croft-agent.service

if [ "$uninstall" = 1 ]; then
  if [ "$start" = 1 ]; then
    systemctl disable --now croft-agent 2>/dev/null || true
  fi
  rm -f "$root$unit" "$root/etc/croft/agent.token" "$root/etc/croft/agent-ca.pem"
  [ -e "$root/etc/systemd/system/croft-coordinator.service" ] || rm -f "$root/usr/local/bin/croft"
  rmdir "$root/etc/croft" 2>/dev/null || true
  if [ "$purge" = 1 ]; then
    case "$datadir" in /?*) rm -rf "$root$datadir" ;; *) die "--purge needs an absolute --data-dir" ;; esac
  else
    echo "install-agent: kept the data directory $root$datadir (--purge removes it)"
  fi
  [ "$start" = 0 ] || systemctl daemon-reload
  echo "install-agent: removed croft-agent"
  exit 0
fi

[ -n "$coordinator" ] || die "--coordinator is required"
[ -n "$token" ] || die "--token-file is required (an agent token: croft token create --role agent ...)"
[ -s "$token" ] || die "no token in $token"
[ -x "$binary" ] || die "no croft binary at $binary (run make build)"
[ -z "$slots" ] || [[ "$slots" =~ ^[1-9][0-9]{0,3}$ ]] || die "--slots must be a number from 1 to 9999"
[ -z "$ca" ] || [ -s "$ca" ] || die "no CA certificate in $ca"
for v in "$coordinator" "$name" "$affinity" "$datadir" "$user"; do
  # One line per unit setting: a newline would end it.
  [[ "$v" != *$'\n'* ]] || die "arguments may not contain newlines (separate affinity lines with \\n)"
done

install_base
install -m 0600 "${owner[@]}" "$token" "$root/etc/croft/agent.token"
args=(agent --coordinator "$coordinator" --data-dir "$datadir" --token-file /etc/croft/agent.token)
if [ -n "$ca" ]; then
  install -m 0644 "$ca" "$root/etc/croft/agent-ca.pem"
  args+=(--ca-cert /etc/croft/agent-ca.pem)
fi
[ -z "$name" ] || args+=(--name "$name")
[ -z "$affinity" ] || args+=(--affinity "$affinity")
[ -z "$slots" ] || args+=(--slots "$slots")
[ "$killonstop" = 0 ] || args+=(--kill-on-stop)

write_unit "$unit" <<UNIT
# Written by scripts/install-agent.sh; remove with --uninstall.
[Unit]
Description=Croft render-farm agent
Documentation=https://github.com/croftfarm/croft/blob/main/docs/OPERATIONS.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$user
ExecStart=$(exec_start "${args[@]}")
# A drained agent (croft agent --drain, or systemctl kill -s USR1) exits 0
# and stays stopped; a crash restarts it, within the 8 s its jobs wait.
Restart=on-failure
RestartSec=2
# The jobs outlive the agent: each attempt runs under a supervisor
# (croft agent-supervise) in a session of its own, but still in this unit's
# cgroup, and systemd's default (KillMode=control-group) would SIGTERM and
# then SIGKILL the whole cgroup on stop or restart, jobs included.
# KillMode=process signals the agent only: it leaves its jobs running (unless
# --kill-on-stop) and the next start re-adopts them. systemd keeps the left
# supervisors in the cgroup and notes them at the next start ("left-over
# process"), which is expected.
KillMode=process
# The agent stops at once; the SIGKILL after this timeout also goes to the
# agent only (KillMode=process).
TimeoutStopSec=30
# Jobs open many files; the agent and its supervisors share this limit.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT

# restart, not start: a reinstall takes the new binary and flags; the
# running jobs survive it (KillMode=process).
start_unit croft-agent
