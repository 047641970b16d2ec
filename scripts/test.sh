#!/usr/bin/env bash
# The README's test command: make sure the servers the tests need are there, then run pytest.
# Arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/test-services.sh
# Exactly what uv.lock pins, extras included (the tracing tests need the OpenTelemetry extra);
# skipped under .ci/run, which has synced already.
[ -n "${UV_NO_SYNC:-}" ] || uv sync --frozen --all-extras --compile-bytecode --quiet
exec uv run pytest "$@"
