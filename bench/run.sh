#!/usr/bin/env bash
# The benchmark in one command: set up the peers' environments, then run everything.
#   bench/run.sh            full run (the lead's run on a quiet machine)
#   bench/run.sh --quick    short points, for a first look while the machine is shared
#   bench/run.sh --help     every option (targets, models, concurrency, CPU pinning, ...)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup_peers.sh"
cd "$(dirname "$here")"
# psutil (RSS of the server process trees) joins the project environment for this run only.
exec uv run --quiet --with psutil python bench/run.py "$@"
