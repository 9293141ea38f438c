# Shared by install-agent.sh and install-coordinator.sh (sourced, not run):
# what installing a croft systemd unit takes whichever the service is.
# The caller sets root, user, datadir, binary, start and prog (its name,
# for messages) before calling these.

# install_base creates the service's user (unless installing into --root),
# the directories, the binary and the data directory; owner (an array) is
# then the install(1) arguments that give a file to that user.
install_base() {
  owner=()
  if [ -z "$root" ]; then
    id -u "$user" >/dev/null 2>&1 || useradd --system --home "$datadir" --shell /usr/sbin/nologin "$user"
    owner=(-o "$user")
  fi
  install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/croft"
  install -m 0755 "$binary" "$root/usr/local/bin/croft"
  install -d -m 0750 "${owner[@]}" "$root$datadir"
}

# systemd_quote prints one ExecStart argument in systemd's quoting: in
# double quotes, with \ " $ % escaped ("$$" and "%%" are a literal $ and
# %); printf %q's bash quoting differs.
systemd_quote() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//\$/\$\$}
  s=${s//%/%%}
  printf '"%s"' "$s"
}

# exec_start prints the ExecStart line of /usr/local/bin/croft ARGS...
exec_start() {
  local line=/usr/local/bin/croft a
  for a in "$@"; do line+=" $(systemd_quote "$a")"; done
  printf '%s' "$line"
}

# write_unit writes the unit text on its standard input to $root$1 as a
# whole (a reader never sees half of it), mode 0644.
write_unit() {
  cat >"$root$1.tmp"
  mv "$root$1.tmp" "$root$1"
  chmod 0644 "$root$1"
  echo "$prog: installed $root$1"
}

# start_unit enables the service NAME and restarts it (a reinstall takes
# the new binary and flags), unless --no-start.
start_unit() {
  [ "$start" = 1 ] || return 0
  systemctl daemon-reload
  systemctl enable "$1"
  systemctl restart "$1"
  systemctl --no-pager status "$1" || true
}
