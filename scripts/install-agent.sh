#!/usr/bin/env bash
# Install the Croft agent on a render node as a systemd service.
#   sudo scripts/install-agent.sh --coordinator http://c1:19211,http://c2:19211,http://c3:19211 \
#        --token-file agent.token [--ca-cert ca.pem] [--affinity "linux,gpu"] [--name NAME] \
#        [--binary bin/croft] [--user croft]
# The token (an agent token bound to this node's name:
#   croft token create --name render-042 --role agent --workers render-042 --projects '*')
# is installed in /etc/croft/agent.token, readable by the agent's user only.
set -euo pipefail
coordinator="" affinity="" name="" binary="$(dirname "$0")/../bin/croft" user="croft" token="" ca=""
while [ $# -gt 0 ]; do
  case "$1" in
    --coordinator) coordinator=$2; shift 2 ;;
    --affinity) affinity=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --token-file) token=$2; shift 2 ;;
    --ca-cert) ca=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$coordinator" ] || { echo "--coordinator is required" >&2; exit 2; }
[ -n "$token" ] || { echo "--token-file is required (an agent token: croft token create --role agent ...)" >&2; exit 2; }
[ -s "$token" ] || { echo "no token in $token" >&2; exit 2; }
[ -x "$binary" ] || { echo "no croft binary at $binary (run make build)" >&2; exit 2; }
install -m 0755 "$binary" /usr/local/bin/croft
id -u "$user" >/dev/null 2>&1 || useradd --system --home /var/lib/croft-agent --shell /usr/sbin/nologin "$user"
install -d -o "$user" /var/lib/croft-agent
install -d -m 0755 /etc/croft
install -m 0600 -o "$user" "$token" /etc/croft/agent.token
args=(--coordinator "$coordinator" --data-dir /var/lib/croft-agent --token-file /etc/croft/agent.token)
if [ -n "$ca" ]; then
  install -m 0644 "$ca" /etc/croft/ca.pem
  args+=(--ca-cert /etc/croft/ca.pem)
fi
[ -n "$name" ] && args+=(--name "$name")
[ -n "$affinity" ] && args+=(--affinity "$affinity")
cat >/etc/systemd/system/croft-agent.service <<UNIT
[Unit]
Description=Croft render-farm agent
After=network-online.target
Wants=network-online.target

[Service]
User=$user
ExecStart=/usr/local/bin/croft agent ${args[*]@Q}
# A drained agent (croft agent --drain, or systemctl kill -s USR1) exits 0
# and stays stopped; a crash restarts it, within the 8 s its jobs wait.
Restart=on-failure
RestartSec=2
# SIGTERM to the agent only: its jobs and their supervisors (in this
# cgroup) run on, and the next start re-adopts them. See
# docs/OPERATIONS.md (Agents: planned restarts, drain).
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now croft-agent
systemctl --no-pager status croft-agent || true
