#!/usr/bin/env bash
# Fresh-machine check: runs the README's two commands, exactly as written, on a clean Debian 12 root
# (debootstrap) with an empty HOME and an empty cache, as root, from a clean clone of HEAD. This is
# what a new user's first run looks like; CI on a machine that keeps earlier installs cannot show it.
#
#   sudo scripts/fresh-machine-check.sh [--root DIR] [--keep] [--only demo|test]
#
#   --root DIR   where to build the root (default: /var/tmp/mqkv-fresh-<time>; must be outside the repo)
#   --keep       keep the root afterwards (default: removed)
#   --only X     run only one of the two commands
#
# Network: the root shares this machine's network, which reaches only the package registries. Their
# settings are read from THIS machine at run time and copied in, never written into the repository:
#   apt   the Debian mirror URIs of /etc/apt/sources.list{,.d/*} (deb822 or one-line) and the
#         Acquire::* settings in /etc/apt/apt.conf.d/
#   pip   /etc/pip.conf, ~/.config/pip/pip.conf, ~/.pip/pip.conf and the PIP_INDEX_URL,
#         PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST, PIP_CERT, PIP_DEFAULT_TIMEOUT variables
#   TLS   the local CAs in /usr/local/share/ca-certificates/ (an egress proxy's CA), with Debian's
#         ca-certificates included in the root so they can be installed
# Nothing else is put into the root: no compiler, no cmake, no python (the commands install those).
#
# Prints the wall time of each command; exits non-zero if either fails. Logs: <root>/../<name>.log
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib/common.sh"

root="" keep=0 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "fresh-machine-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine-check: must run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
root=${root:-/var/tmp/mqkv-fresh-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$root"
root=$(cd "$root" && pwd)
case "$root/" in "$repo"/*) echo "fresh-machine-check: --root $root is inside the repository" >&2; exit 2 ;; esac
logdir=$(dirname "$root")
name=$(basename "$root")

mqkv_apt_install debootstrap git

# --- the host's Debian mirror ---------------------------------------------------------------
mqkv_debian_mirrors   # MQKV_MIRROR, MQKV_SECURITY (scripts/lib/common.sh)
mirror=$MQKV_MIRROR security=$MQKV_SECURITY
[ -n "$mirror" ] || { echo "fresh-machine-check: no Debian bookworm mirror found in /etc/apt/sources.list*" >&2; exit 1; }
echo "fresh-machine-check: root $root (mirror and pip settings taken from this machine)" >&2

mounted=()
cleanup() {
  local i
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  if [ "$keep" = 0 ]; then rm -rf --one-file-system "$root"; else echo "fresh-machine-check: kept $root" >&2; fi
}
trap cleanup EXIT

# --- the root ----------------------------------------------------------------------------
t0=$SECONDS
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$logdir/$name.debootstrap.log" 2>&1 \
  || { tail -n 30 "$logdir/$name.debootstrap.log" >&2; echo "fresh-machine-check: debootstrap failed (log $logdir/$name.debootstrap.log)" >&2; exit 1; }
debootstrap_s=$((SECONDS - t0))

# apt: the same mirrors and Acquire settings as this machine
{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  [ -n "$security" ] && echo "deb $security bookworm-security main"
} >"$root/etc/apt/sources.list"
for f in /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && grep -q '^[[:space:]]*Acquire::' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
done
# TLS: the host's local CAs
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip: the index settings of this machine (no find-links: a local wheel folder is not a registry)
[ -f /etc/pip.conf ] && grep -v -i 'find-links' /etc/pip.conf >"$root/etc/pip.conf"
for f in "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
  [ -f "$f" ] && grep -v -i 'find-links' "$f" >>"$root/etc/pip.conf"
done
pipenv=()
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_CERT PIP_DEFAULT_TIMEOUT; do
  [ -n "${!v:-}" ] && pipenv+=("$v=${!v}")
done

for m in proc sys dev dev/pts; do
  mkdir -p "$root/$m"
  mount --bind "/$m" "$root/$m"
  mounted+=("$root/$m")
done
chroot "$root" update-ca-certificates >/dev/null 2>&1 || true

# --- a clean clone of HEAD, in root's empty HOME -------------------------------------------
rm -rf "$root/root" && mkdir -p "$root/root"
git clone --quiet --no-hardlinks "$repo" "$root/root/mqkv"
echo "fresh-machine-check: debootstrap ${debootstrap_s} s; clone of $(git -C "$repo" rev-parse --short HEAD)" >&2

run_in_root() {   # NAME COMMAND: runs COMMAND as written, in the clone, empty HOME, default cache
  local label=$1 cmd=$2 t=$SECONDS rc=0
  echo "fresh-machine-check: running '$cmd' (log $logdir/$name.$label.log)" >&2
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb "${pipenv[@]}" \
    /bin/bash -c "cd /root/mqkv && $cmd" </dev/null >"$logdir/$name.$label.log" 2>&1 || rc=$?
  local s=$((SECONDS - t))
  printf '%-16s %s  %d min %02d s  exit %d\n' "$label" "$cmd" $((s / 60)) $((s % 60)) "$rc"
  [ "$rc" = 0 ] || tail -n 40 "$logdir/$name.$label.log" >&2
  return "$rc"
}

status=0
echo "fresh-machine-check: Debian 12 root from debootstrap in ${debootstrap_s} s, HEAD $(git -C "$repo" rev-parse --short HEAD), $(nproc) cores"
if [ -z "$only" ] || [ "$only" = demo ]; then run_in_root demo "scripts/demo.sh" || status=1; fi
if [ -z "$only" ] || [ "$only" = test ]; then run_in_root test "scripts/test.sh" || status=1; fi
[ "$status" = 0 ] && echo "fresh-machine-check: both commands passed" || echo "fresh-machine-check: FAILED"
exit $status
