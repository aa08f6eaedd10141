#!/usr/bin/env bash
# Make sure a headless Chromium is available for the browser tests and print its path.
#
# Prints one line on stdout, the browser executable (e.g. /usr/bin/chromium); everything else goes to stderr, so
# `MODELARC_TEST_CHROMIUM=$(scripts/ci/chromium.sh)` works. Installs Debian's `chromium` package when no browser is
# found (as root, or with passwordless sudo). The tests drive it with Playwright's `executable_path`: Playwright's
# own browser download is never used (this machine reaches only the package registries).
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_browser() {
    local candidate
    for candidate in "${MODELARC_TEST_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if browser=$(find_browser); then
    echo "$browser"
    exit 0
fi

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
export DEBIAN_FRONTEND=noninteractive
log "installing Debian's chromium (first run only)"
{
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium fonts-dejavu-core
} >&2
browser=$(find_browser) || { log "error: chromium is still missing after apt-get install"; exit 1; }
echo "$browser"
