"""Model cards: the free-text fields a pusher gives and the metrics computed from the bundle.

Metrics come from the bundle's validation sample (the rows and the outputs the model gave for
them at build). With labels for those rows (same order, one per row) the card also holds the
quality figures: accuracy (and ROC AUC for a binary classifier with probabilities) or RMSE and
MAE for a regressor. No framework is imported: this is arithmetic on recorded outputs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rtserve.bundle.bundle import Bundle
from rtserve.errors import RegistryInputError
from rtserve.registry.records import ModelCard


def build_card(
    bundle: Bundle,
    *,
    owner: str = "",
    intended_use: str = "",
    training_data: str = "",
    limitations: str = "",
    labels: Sequence[Any] | None = None,
) -> ModelCard:
    """The card of a version about to be pushed."""
    sample = bundle.read_validation()
    outputs = bundle.manifest.model_schema.outputs
    metrics: dict[str, Any] = {"validation_rows": sample.rows, "task": str(outputs.task.value)}
    predicted = sample.outputs.get("label")
    values = sample.outputs.get("value")
    if predicted is not None:
        counts = Counter(str(label) for label in predicted)
        metrics["predicted_label_share"] = {
            label: round(count / max(sample.rows, 1), 6) for label, count in sorted(counts.items())
        }
    elif values is not None:
        flat = [float(v) for v in _flatten(values) if v is not None]
        if flat:
            metrics["predicted_mean"] = round(sum(flat) / len(flat), 6)
    if labels is not None:
        if len(labels) != sample.rows:
            raise RegistryInputError(
                f"labels: {len(labels)} given but the validation sample of "
                f"{bundle.name}@{bundle.version} has {sample.rows} rows; give one label per "
                "validation row, in order (see `rtserve inspect` for the sample)",
                field="labels",
            )
        metrics["labelled_rows"] = len(labels)
        if predicted is not None:
            metrics.update(_classification(predicted, labels, sample.outputs.get("probabilities"),
                                           outputs.classes))  # fmt: skip
        elif values is not None:
            metrics.update(_regression(values, labels))
    return ModelCard(
        owner=owner,
        intended_use=intended_use,
        training_data=training_data,
        limitations=limitations,
        description=bundle.manifest.description,
        metrics=metrics,
    )


def _flatten(values: Sequence[Any]) -> list[Any]:
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def _classification(
    predicted: Sequence[Any],
    labels: Sequence[Any],
    probabilities: Sequence[Any] | None,
    classes: Sequence[Any] | None,
) -> dict[str, Any]:
    correct = sum(str(p) == str(y) for p, y in zip(predicted, labels, strict=True))
    out: dict[str, Any] = {"accuracy": round(correct / len(labels), 6)}
    if probabilities is not None and classes is not None and len(classes) == 2:
        positive = str(classes[1])
        scores = [float(row[1]) for row in probabilities]
        truth = [str(y) == positive for y in labels]
        auc = roc_auc(scores, truth)
        if auc is not None:
            out["roc_auc"] = round(auc, 6)
    return out


def _regression(values: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    predicted = [float(v[0] if isinstance(v, list) else v) for v in values]
    truth = [float(y) for y in labels]
    errors = [p - y for p, y in zip(predicted, truth, strict=True)]
    return {
        "rmse": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 6),
        "mae": round(sum(abs(e) for e in errors) / len(errors), 6),
    }


def roc_auc(scores: Sequence[float], truth: Sequence[bool]) -> float | None:
    """ROC AUC by ranks (ties share their average rank); None when one class is absent."""
    positives = sum(truth)
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, positive in zip(ranks, truth, strict=True) if positive)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
