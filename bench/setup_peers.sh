#!/usr/bin/env bash
# Create (or refresh) one virtual environment per peer under bench/.venvs/, never touching the
# project's own environment. scikit-learn, numpy, pandas and joblib are pinned to the versions of
# the project environment, so every peer loads the same joblib files as rtserve's builder saw.
# Re-running is cheap: an environment is rebuilt only when its requirements or pins changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
pins="$(cd "$root" && uv run --quiet python -c 'import joblib, numpy, pandas, sklearn; print(f"scikit-learn=={sklearn.__version__} numpy=={numpy.__version__} pandas=={pandas.__version__} joblib=={joblib.__version__}")')"
for peer in fastapi mlserver bentoml litserve mosec; do
  venv="$here/.venvs/$peer"
  want="$(cat "$here/requirements/$peer.txt") $pins"
  if [[ -f "$venv/.bench-installed" && "$(cat "$venv/.bench-installed")" == "$want" ]]; then
    continue
  fi
  echo "bench: setting up $peer in bench/.venvs/$peer ..." >&2
  uv venv --quiet --allow-existing --python 3.11 "$venv"
  # shellcheck disable=SC2086  # the pins are separate words on purpose
  uv pip install --quiet --python "$venv/bin/python" -r "$here/requirements/$peer.txt" $pins psutil
  echo "$want" > "$venv/.bench-installed"
done
