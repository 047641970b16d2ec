"""How long `rtserve --help` and `import rtserve` take in a fresh interpreter.

Not a test (start-up time depends on the machine): a measurement to run before and after a
change. Each command runs ``--runs`` times; the median and the fastest are printed, with the time
of a bare ``python -c pass`` for scale.

    uv run python bench/import_time.py --runs 20
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _timed(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    console_script = shutil.which("rtserve") or str(Path(sys.executable).with_name("rtserve"))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import rtserve": [sys.executable, "-c", "import rtserve"],
        "import rtserve.errors": [sys.executable, "-c", "import rtserve.errors"],
        "rtserve --help": [console_script, "--help"],
    }
    print(f"{'command':<24}{'median s':>10}{'fastest s':>11}  ({args.runs} runs each)")
    for label, command in commands.items():
        seconds = _timed(command, args.runs)
        print(f"{label:<24}{statistics.median(seconds):>10.3f}{min(seconds):>11.3f}")


if __name__ == "__main__":
    main()
