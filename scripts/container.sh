#!/usr/bin/env bash
# The container image, assembled from what this machine has (no base image from a registry):
# the release autossh, OpenSSH's client and the libraries both need, dash for the entrypoint.
# It runs as any non-root UID (the entrypoint writes that UID's passwd entry into /tmp, which
# /etc/passwd links to: ssh refuses to run as a UID without one), with /healthz as its
# HEALTHCHECK (`autossh health`), the key and known_hosts mounted.
#
#   bash scripts/container.sh build   the image localhost/autossh-rs:VERSION (buildah)
#   bash scripts/container.sh test    build it, then run it (podman, as UID 4242) against a
#                                     private sshd on 127.0.0.1: /healthz 200, a request through
#                                     the tunnel, the HEALTHCHECK, `autossh health`, a clean stop
#
# Where containers cannot run (no podman/buildah and no apt-get to install them, or the
# runtime refuses: a sandbox without the kernel features), it says so with the runtime's exact
# error and exits 0: CI runs it everywhere (.ci/run). Everything it starts is stopped on exit;
# CONTAINER_KEEP_IMAGE=1 keeps the image after `test` (`build` always keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Docker's image format: OCI's has no HEALTHCHECK.
export BUILDAH_FORMAT=docker
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IMAGE=localhost/autossh-rs:$VERSION
WHAT=${1:-test}
skip() { echo "container: SKIPPED: $*" >&2; exit 0; }
say() { echo "container: $*" >&2; }

need_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v runc >/dev/null || missing+=(runc)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    skip "${missing[*]} missing, and no apt-get as root to install them"
  fi
  say "installing ${missing[*]} (Debian's packages)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; } 2>&1 | tail -n 3 >&2 ||
    skip "cannot install ${missing[*]}"
  command -v podman >/dev/null && command -v buildah >/dev/null || skip "podman/buildah did not install"
}

# Copies a program (to $3, default its own path) and every library it loads (ldd) into the
# image's root $1.
copy_with_libs() {
  local root=$1 prog=$2 dest=${3:-$2} lib
  install -D -m 0755 "$prog" "$root$dest"
  for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

ENTRYPOINT='#!/bin/sh
# Any UID: its passwd entry (ssh needs one) in /tmp/passwd, which /etc/passwd links to.
while read -r key real _; do
  case $key in Uid:) uid=$real ;; Gid:) gid=$real ;; esac
done </proc/self/status
{
  echo "root:x:0:0:root:/root:/usr/sbin/nologin"
  [ "$uid" = 0 ] || echo "autossh:x:$uid:$gid:autossh:/tmp:/usr/sbin/nologin"
} >/tmp/passwd
exec /usr/bin/autossh "$@"
'

build() {
  cargo build --release -p autossh -q
  local c root
  c=$(buildah from --quiet scratch)
  # shellcheck disable=SC2064
  trap "buildah rm '$c' >/dev/null 2>&1 || true" RETURN
  root=$(buildah mount "$c")
  copy_with_libs "$root" "$PWD/target/release/autossh" /usr/bin/autossh
  copy_with_libs "$root" /usr/bin/ssh
  copy_with_libs "$root" /bin/dash
  ln -s dash "$root/bin/sh"
  mkdir -p "$root/etc" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  ln -s /tmp/passwd "$root/etc/passwd"
  printf 'root:x:0:\nautossh:x:10001:\n' >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf '%s' "$ENTRYPOINT" >"$root/usr/bin/autossh-entrypoint"
  chmod 0755 "$root/usr/bin/autossh-entrypoint"
  buildah umount "$c" >/dev/null
  buildah config --user 10001:10001 --env AUTOSSH_HTTP=127.0.0.1:9101 \
    --entrypoint '["/usr/bin/autossh-entrypoint"]' --cmd '[]' \
    --healthcheck 'CMD /usr/bin/autossh health' \
    --healthcheck-interval 10s --healthcheck-timeout 5s --healthcheck-retries 3 \
    --label org.opencontainers.image.title=autossh-rs \
    --label org.opencontainers.image.version="$VERSION" "$c"
  local old
  old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  buildah commit --quiet --format docker --rm "$c" "$IMAGE" >/dev/null
  trap - RETURN
  # The image this one replaces, left untagged: removed (unless a container still uses it).
  [ -z "$old" ] || [ "$old" = "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ] ||
    podman rmi "$old" >/dev/null 2>&1 || true
  say "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
}

# The podman options this machine needs to run a container at all (none, lower rlimits, runc),
# or skip with the runtime's own error.
RUN_OPTS=()
find_run_opts() {
  local tries=("" "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --runtime runc") t err
  for t in "${tries[@]}"; do
    # shellcheck disable=SC2206
    local opts=($t)
    if err=$(podman run --rm "${opts[@]}" "$IMAGE" -V 2>&1); then
      RUN_OPTS=("${opts[@]}")
      say "containers run here${t:+ with: $t}"
      return 0
    fi
  done
  skip "containers cannot run on this machine: podman run says: $(echo "$err" | tail -n 1)"
}

case $WHAT in
  build) need_tools; build; exit 0 ;;
  test) ;;
  *) echo "usage: bash scripts/container.sh [build|test]" >&2; exit 2 ;;
esac
need_tools
build
find_run_opts
exec bash scripts/container-test.sh "$IMAGE" "${RUN_OPTS[@]}"
