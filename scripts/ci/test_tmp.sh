#!/usr/bin/env bash
# The folder the test suite's temporary files go to (pytest --basetemp), or nothing for pytest's default under
# $TMPDIR. MODELARC_TEST_TMP chooses one (empty: the default). Otherwise a folder in /dev/shm when it is a tmpfs
# with at least 8 GiB free: the suite writes a few GB of archives, and on a disk the kernel's writeback of them
# took ~14% of the two cores' CPU (kworker ext4), the suite ran 10-15% longer (bench/README.md "Test suite time").
# pyproject.toml keeps only failed tests' folders, so the tmpfs holds little more than the running tests' files.
set -euo pipefail
if [[ -n "${MODELARC_TEST_TMP+set}" ]]; then
    echo "${MODELARC_TEST_TMP}"
    exit 0
fi
shm=/dev/shm
if [[ -d $shm && -w $shm && $(stat -f -c %T "$shm" 2>/dev/null) == tmpfs ]]; then
    free_kib=$(df -Pk "$shm" | awk 'NR == 2 { print $4 }')
    if (( free_kib >= 8 * 1024 * 1024 )); then
        echo "$shm/modelarc-tests-$(id -u)"
    fi
fi
