#!/usr/bin/env bash
# Programs the test suite drives that this machine kind does not provide by itself, all from
# Debian's packages: Prometheus (scrape test), Chromium (the compare report is opened headless),
# nginx (replicas behind a load balancer), and buildah/podman/runc/mmdebstrap (the container image
# is built and run for real). PostgreSQL, Redis, NATS and RabbitMQ run already on loopback.
# Idempotent and quiet: does nothing when everything is installed.
set -euo pipefail

packages=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
for tool in podman buildah runc mmdebstrap; do
    command -v "${tool}" >/dev/null 2>&1 || packages+=("${tool}")
done

if [ "${#packages[@]}" -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    # --no-install-recommends: only the programs, no exporters or desktop extras; quiet unless
    # it fails. The nginx package would start a server on port 80: policy-rc.d forbids that
    # (the tests start their own nginx on a loopback port with a generated config).
    if ! apt_log="$("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive sh -c '
            printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"
            status=$?; rm -f /usr/sbin/policy-rc.d; exit $status' sh "${packages[@]}" 2>&1)"; then
        printf '%s\n' "${apt_log}" >&2
        exit 1
    fi
fi
