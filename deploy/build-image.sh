#!/usr/bin/env bash
# Build the Croft container image without any network access: stage the
# static croft binary and a static busybox into a temporary build context
# and run `docker build` on it (deploy/Dockerfile is FROM scratch).
#
#   deploy/build-image.sh [TAG]     default TAG: croft:local
#
# Environment: BUSYBOX (default /bin/busybox; Debian: apt-get install
# busybox-static), CROFT_BIN (default bin/croft, built with `make build` when
# it is not set).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-croft:local}
busybox=${BUSYBOX:-/bin/busybox}

if [ -z "${CROFT_BIN:-}" ]; then
  make -s build
  CROFT_BIN=bin/croft
fi
[ -x "$CROFT_BIN" ] || { echo "build-image: no croft binary at $CROFT_BIN" >&2; exit 1; }
[ -x "$busybox" ] || { echo "build-image: no busybox at $busybox (Debian: apt-get install busybox-static)" >&2; exit 1; }
# Both must be static: the image has no libc. A dynamic binary carries an
# ELF interpreter path (/lib64/ld-linux-x86-64.so.2, /lib/ld-musl-...).
for b in "$CROFT_BIN" "$busybox"; do
  if LC_ALL=C grep -aq -e '/lib64/ld-linux' -e '/lib/ld-linux' -e '/lib/ld-musl' "$b"; then
    echo "build-image: $b is dynamically linked; the scratch image needs a static binary" >&2
    echo "             (croft: CGO_ENABLED=0, as in \`make build\`; busybox: Debian's busybox-static)" >&2
    exit 1
  fi
done

ctx=$(mktemp -d "${TMPDIR:-/tmp}/croft-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/owned/data" "$ctx/owned/shared"
cp "$CROFT_BIN" "$ctx/rootfs/bin/croft"
cp "$busybox" "$ctx/rootfs/bin/busybox"
chmod 0755 "$ctx/rootfs/bin/croft" "$ctx/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  case $applet in busybox | croft) continue ;; esac
  ln -s busybox "$ctx/rootfs/bin/$applet"
done
chmod 1777 "$ctx/rootfs/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\ncroft:x:10001:10001:croft:/data:/bin/sh\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\ncroft:x:10001:\n' >"$ctx/rootfs/etc/group"
cp deploy/Dockerfile "$ctx/Dockerfile"

if ! log=$(docker build --quiet --tag "$tag" "$ctx" 2>&1); then
  echo "$log" >&2
  exit 1
fi
# Smoke test: the binary runs and the shell works (catches a dynamic busybox).
out=$(docker run --rm --network none "$tag" version) || { echo "build-image: $tag does not run croft" >&2; exit 1; }
docker run --rm --network none --entrypoint /bin/sh "$tag" -c 'echo ok >/dev/null && [ -w /data ] && [ -w /shared ] && [ -w /tmp ]' ||
  { echo "build-image: smoke test of $tag failed" >&2; exit 1; }
echo "built $tag ($out)"
