"""The written report: summary.json is strict JSON holding the numbers the page shows, the page
embeds its plots and escapes every value that came from the data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rtserve.evaluation.compare import Options, compare
from rtserve.evaluation.gates import evaluate_gates, parse_gates
from rtserve.evaluation.pairing import Paired, Side
from rtserve.evaluation.report import REPORT_FILE, SUMMARY_FILE, write
from rtserve.types import Task

HOSTILE = "<script>alert('x')</script>"


def _classifier() -> Paired:
    rng = np.random.default_rng(5)
    n = 400
    truth = rng.integers(0, 2, n)
    p_old = np.clip(truth * 0.6 + rng.random(n) * 0.4, 0, 1)
    p_new = np.clip(p_old + rng.normal(0, 0.05, n), 0, 1)
    return Paired(
        old=Side("fraud", "1", "sha256:a", "old"),
        new=Side("fraud", "2", "sha256:b", "new"),
        task=Task.CLASSIFICATION,
        classes=["0", "1"],
        positions=np.arange(n),
        old_labels=(p_old > 0.5).astype(np.int64),
        new_labels=(p_new > 0.5).astype(np.int64),
        old_proba=np.column_stack([1 - p_old, p_old]),
        new_proba=np.column_stack([1 - p_new, p_new]),
        truth=truth,
        fields={"shop": np.asarray([HOSTILE if i % 2 else "ok" for i in range(n)], dtype=object)},
        rows_read=n,
    )


def _regressor() -> Paired:
    rng = np.random.default_rng(6)
    old = rng.normal(10, 2, 300)
    return Paired(
        old=Side("loss", "1", "sha256:a", "old"),
        new=Side("loss", "2", "sha256:b", "new"),
        task=Task.REGRESSION,
        classes=None,
        positions=np.arange(300),
        old_values=old,
        new_values=old + rng.normal(0, 0.1, 300),
        fields={"shop": np.asarray(["a", "b", "c"] * 100, dtype=object)},
        rows_read=300,
    )


def _images(page: str) -> list[str]:
    return re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)


def test_the_page_embeds_its_plots_and_escapes_data_values(tmp_path: Path) -> None:
    result = compare(
        _classifier(), source="t", labels="y", specs=[("shop",)], options=Options(resamples=100)
    )
    gates = evaluate_gates(parse_gates("auc_drop>0.01"), result.to_dict())
    written = write(result, gates, tmp_path, html_page=True)
    assert written == [tmp_path / SUMMARY_FILE, tmp_path / REPORT_FILE]
    page = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert len(_images(page)) == 3  # distributions, reliability curves, the shop segments
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script" not in page  # the page runs no script at all

    summary = json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert summary["passed"] is True
    assert summary["gates"][0]["gate"] == "auc_drop>0.01"
    assert {s["value"] for s in summary["segments"]} == {"ok", HOSTILE}
    assert sum(summary["distributions"]["old"]) == 400
    assert len(summary["calibration"]["old"]["predicted"]) > 3
    auc = next(c for c in summary["overall"]["checks"] if c["delta"] == "auc_drop")
    assert f"{auc['value']:.4g}" in page  # the page shows the summary's numbers


def test_a_regressor_report_has_value_distributions_and_no_calibration(tmp_path: Path) -> None:
    result = compare(
        _regressor(), source="t", labels=None, specs=[("shop",)], options=Options(resamples=100)
    )
    write(result, [], tmp_path, html_page=True)
    page = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert len(_images(page)) == 2  # distributions, the shop segments
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert summary["calibration"] is None
    assert summary["distributions"]["kind"] == "value"
    assert [c["delta"] for c in summary["overall"]["checks"]] == ["value_shift"]
    assert summary["overall"]["deltas"]["value"]["max"] > 0
