"""The HTML report renders in a real browser: Debian's headless chromium loads the one file,
offline, and its plots appear (the images decode and paint the models' colours)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app
from rtserve.evaluation.report import NEW_COLOUR, OLD_COLOUR
from tests.compare_support import LABEL, SegmentPair

pytestmark = [pytest.mark.integration, pytest.mark.chromium]

#: Figures the report draws here: score distributions, reliability curves, one per segment field.
FIGURES = 3
WINDOW = (1280, 4000)


def chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless chromium on a local file, nothing fetched from the network."""
    return subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *mode, page.as_uri(),
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def painted(screenshot: Path, colour: str) -> int:
    """Pixels of the screenshot within a small distance of ``colour`` (#rrggbb)."""
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    target = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - target).max(axis=-1) < 0.06).sum())


def test_the_report_renders_its_plots_in_headless_chromium(
    segment_pair: SegmentPair, holdout_parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["compare", str(segment_pair.old), str(segment_pair.new), "--data", str(holdout_parquet),
         "--labels", LABEL, "--segment-by", "country", "--resamples", "200", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=['\"](https?:)?//", html)  # self-contained: no fetches

    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    images = re.findall(r"<img [^>]*src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"", dom)
    assert len(images) == FIGURES
    assert all(len(data) > 5_000 for data in images)

    # The same page with its images emptied: what the text and tables alone paint.
    bare = out / "bare.html"
    bare.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html), encoding="utf-8")
    shot, bare_shot = tmp_path / "report.png", tmp_path / "bare.png"  # kept as artifacts
    chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    chromium(bare, tmp_path / "profile", f"--screenshot={bare_shot}")

    for colour in (OLD_COLOUR, NEW_COLOUR):  # the two models' lines are drawn in these
        assert painted(shot, colour) > 500, colour
        assert painted(bare_shot, colour) < 50, colour
