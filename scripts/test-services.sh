#!/usr/bin/env bash
# Servers the test suite talks to that this machine kind does not start by itself.
# PostgreSQL and Redis run already (127.0.0.1:5432, :6379); Prometheus comes from Debian's package.
# Idempotent and quiet: does nothing when everything is installed.
set -euo pipefail

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    # --no-install-recommends: only the binaries, no exporters; quiet unless it fails.
    if ! apt_log="$("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus' 2>&1)"; then
        printf '%s\n' "${apt_log}" >&2
        exit 1
    fi
fi
