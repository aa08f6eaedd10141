#!/usr/bin/env bash
# Print the interpreter `make venv` builds .venv from (the Makefile's PYTHON; `make venv PYTHON=...` overrides it).
#
# The operating system's own CPython, when it is the same minor version as the `python3` found first on PATH, goes
# before that `python3`. Why (issue 12, the fixed cost of every command): Debian builds its CPython with
# profile-guided and link-time optimisation and links libpython into the executable, while a Python compiled from
# source by pyenv, as this machine's PATH has first, is built without either and calls into a shared libpython.
# Measured here (bench/README.md "Which interpreter"): the same `modelarc` commands spend 12-17% less CPU on
# Debian's 3.11. The same minor version only, so the same wheels apply (the CPU build of torch on this disk is for
# 3.11), and only one that can make a venv with pip in it (Debian ships ensurepip separately, in python3.X-venv):
# otherwise `python3` as before.
set -euo pipefail

minor_of() { "$1" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null; }

fallback=python3
wanted=$(minor_of "$fallback" || true)
if [[ -n "$wanted" ]]; then
    for system in "/usr/bin/python$wanted" /usr/bin/python3; do
        if [[ -x "$system" && "$(minor_of "$system" || true)" == "$wanted" ]] &&
            "$system" -c 'import ensurepip, venv' 2>/dev/null; then
            echo "$system"
            exit 0
        fi
    done
fi
echo "$fallback"
