#!/usr/bin/env bash
# Installs what the aarch64 cross build needs (idempotent; quick when everything is present):
#   - on the host, Debian's g++-aarch64-linux-gnu, qemu-user (runs the tests) and debootstrap;
#   - $MQKV_CACHE/arm64-root, an arm64 Debian 12 root holding the arm64 -dev libraries mqkv links
#     (flatbuffers, zstd, xxhash, curl, OpenSSL, zlib, GoogleTest, plus the header-only xsimd, xtl
#     and CLI11), used as the cross build's sysroot.
# The root is made by debootstrap's first stage only (--foreign: download and unpack, nothing of
# arm64 is run) and every downloaded package unpacked into it with dpkg-deb: no foreign dpkg
# architecture on the host, no binfmt, no root-owned state outside the cache. The mirror is this
# machine's own (scripts/lib/common.sh mqkv_debian_mirrors). Prints nothing on stdout.
set -euo pipefail
exec 1>&2
. "$(dirname "$0")/lib/common.sh"

mqkv_apt_install g++-aarch64-linux-gnu qemu-user debootstrap flatbuffers-compiler

# The arm64 packages of the sysroot; a change here rebuilds the root.
pkgs="libc6-dev,libstdc++-12-dev,libflatbuffers-dev,libzstd-dev,libxxhash-dev,libcurl4-openssl-dev,libssl-dev,zlib1g-dev,libgtest-dev,libgmock-dev,libxsimd-dev,xtl-dev,libcli11-dev,libhtscodecs-dev"
root="$MQKV_CACHE/arm64-root"
stamp="$root/.mqkv-sysroot"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkgs" ]; then
  exit 0
fi

[ "$(id -u)" -eq 0 ] || command -v fakeroot >/dev/null \
  || { echo "mqkv: setup-arm64.sh: debootstrap needs root (or fakeroot) to make $root" >&2; exit 1; }
mqkv_debian_mirrors
tmp="$root.tmp.$$"
trap 'rm -rf --one-file-system "$tmp"' EXIT
rm -rf --one-file-system "$tmp"
mkdir -p "$MQKV_CACHE"
echo "mqkv: making the arm64 sysroot $root from $MQKV_MIRROR (debootstrap --foreign; a few minutes)" >&2
t0=$SECONDS
fake=()
[ "$(id -u)" -eq 0 ] || fake=(fakeroot)
"${fake[@]}" debootstrap --foreign --arch=arm64 --variant=minbase --include="$pkgs" bookworm "$tmp" "$MQKV_MIRROR" \
  >"$MQKV_CACHE/arm64-root.debootstrap.log" 2>&1 \
  || { tail -n 20 "$MQKV_CACHE/arm64-root.debootstrap.log" >&2
       echo "mqkv: setup-arm64.sh: debootstrap failed (log $MQKV_CACHE/arm64-root.debootstrap.log)" >&2; exit 1; }
# The first stage unpacks only the required packages; unpack the rest (the -dev libraries and
# their dependencies) too. Nothing is configured: a sysroot needs files, not maintainer scripts.
n=0
for deb in "$tmp"/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$deb" "$tmp"
  n=$((n + 1))
done
rm -f "$tmp"/var/cache/apt/archives/*.deb
# Absolute symlinks inside the root (e.g. /usr/lib/aarch64-linux-gnu/libz.so -> /lib/...) would
# point into the host: make them relative to the root.
while IFS= read -r -d '' l; do
  t=$(readlink "$l")
  case "$t" in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$tmp$t")" "$l" ;;
  esac
done < <(find "$tmp/usr" "$tmp/lib" -type l -print0 2>/dev/null)
echo "$pkgs" >"$tmp/.mqkv-sysroot"
rm -rf --one-file-system "$root"
mv "$tmp" "$root"
trap - EXIT
echo "mqkv: arm64 sysroot ready ($n packages, $((SECONDS - t0)) s)" >&2
