#!/usr/bin/env bash
# Make sure the float-planes codec's C extension (storage/codecs/_planes.c) can be built by PYTHON's pip: a C
# compiler and that Python's headers. Installs Debian's packages when either is missing (as root, or with
# passwordless sudo); otherwise says what to install and fails. Run by `make venv` and .ci/run.
set -euo pipefail

PYTHON="${1:-python3}"
log() { echo "compiler.sh: $*" >&2; }

has_headers() {
    "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

if command -v cc >/dev/null && has_headers; then
    exit 0
fi

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
log "installing a C compiler and the Python $minor headers (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2 &&
    { "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends gcc libc6-dev python3-dev "python$minor-dev" >&2 ||
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends gcc libc6-dev python3-dev >&2; }; }; then
    log "error: could not install them; install a C compiler and the headers of $PYTHON, then run make again"
    exit 1
fi
command -v cc >/dev/null && has_headers || { log "error: still no compiler or Python.h for $PYTHON"; exit 1; }
