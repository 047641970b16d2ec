"""Live drift: each served model's recent traffic compared with its bundle's training profile.

Per feature: the population stability index (PSI) on the profile's quantile bins (numeric) or
category frequencies (categorical), the change of the missing-value share, the share of values
never seen in training (categorical) or outside the training range (numeric). For the outputs:
PSI of the predicted classes (or value bins) and the mean confidence.

Each drained batch of requests is summarised once, on the observer's thread, into one count
vector per model version (bin counts, nulls, unseen ... of every feature, then the outputs' counts,
side by side); the window keeps those chunks and their running total, so a report costs a few
vector operations whatever the traffic. Numeric features are binned together, one vectorised pass
over a fields x rows block, so the cost per batch hardly grows with the number of fields. The
window holds the last ``window_rows`` rows and, when ``window_seconds`` > 0, nothing older.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import numpy as np

from rtserve.bundle.profile import CategoricalProfile, NumericProfile, OutputProfile, Profile
from rtserve.bundle.schema import FieldType, Schema
from rtserve.events import PredictionEvent
from rtserve.observability.metrics import Metrics
from rtserve.observability.queueing import SUMMARY_INTERVAL_S, BackgroundQueue
from rtserve.runtimes.base import ModelOutput
from rtserve.settings import DriftSettings
from rtserve.types import AnyArray, Columns, FloatArray

#: Proportions are floored at this before the PSI's logarithm (empty bins would be infinite).
PSI_FLOOR = 1e-4
#: Most edge-by-value comparisons held in memory at once while binning (bytes of booleans).
_COMPARE_CHUNK = 1 << 21


@dataclass(frozen=True)
class Reference:
    """What drift is measured against: a served bundle's schema and training profile."""

    schema: Schema
    profile: Profile
    digest: str


def psi(expected: AnyArray, counts: AnyArray) -> float:
    """Population stability index of observed ``counts`` against ``expected`` proportions."""
    total = float(counts.sum())
    if total <= 0:
        return 0.0
    actual = np.maximum(counts / total, PSI_FLOOR)
    reference = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((actual - reference) * np.log(actual / reference)))


def _bin_counts(
    values: FloatArray, edges: FloatArray, low: FloatArray, high: FloatArray, width: int
) -> FloatArray:
    """Count each row of ``values`` (fields x rows) into its field's bins, all fields at once.

    Row ``f`` of the result (``width`` columns) holds the counts of bins ``0 .. E`` of
    ``edges[f]`` (sorted, NaN-padded to a common ``E``), then zeros, then the nulls (NaN), then
    the values outside ``[low[f], high[f]]``. The bins are those of
    ``searchsorted(edges[f], present, side="right")``: counting the values at or above each edge
    gives the same counts as a difference of neighbours, with one vectorised comparison instead
    of a binary search per value (several times faster on unsorted values). NaN compares false
    both ways, so a padding edge counts nothing and a null value falls in no bin.
    """
    fields, rows = values.shape
    n_edges = edges.shape[1]
    at_or_above = np.zeros((fields, n_edges), dtype=np.int64)
    step = max(1, _COMPARE_CHUNK // max(fields * n_edges, 1))
    for start in range(0, rows, step):
        part = values[:, None, start : start + step]
        at_or_above += np.count_nonzero(edges[:, :, None] <= part, axis=2)
    nulls = np.count_nonzero(np.isnan(values), axis=1)
    cumulative = np.column_stack([rows - nulls, at_or_above, np.zeros(fields, dtype=np.int64)])
    out = np.zeros((fields, width))
    out[:, : n_edges + 1] = cumulative[:, :-1] - cumulative[:, 1:]
    out[:, -2] = nulls
    out[:, -1] = np.count_nonzero((values < low[:, None]) | (values > high[:, None]), axis=1)
    return out


class _Numeric:
    """Layout: one count per profile bin, then nulls, then values outside [min, max]."""

    kind = "numeric"

    def __init__(self, profile: NumericProfile) -> None:
        self.edges = np.asarray(profile.edges, dtype=np.float64)
        counts = np.asarray(profile.counts, dtype=np.float64)
        self.expected = counts / counts.sum() if counts.sum() > 0 else None
        self.bins = len(profile.counts) if self.expected is not None else 0
        self.low = profile.min if profile.min is not None else -np.inf
        self.high = profile.max if profile.max is not None else np.inf
        self.null_rate = profile.null_rate
        self.size = self.bins + 2
        # _bin_counts matches searchsorted only on sorted edges (NaN fails the test): a profile
        # that is not (never built by rtserve) keeps the binary search
        self.sorted_edges = bool(np.all(self.edges[:-1] <= self.edges[1:]))
        #: Columns of this feature's row in ``_bin_counts``: every bin index, nulls, out of range.
        self.width = max(self.edges.size + 1, self.bins) + 2

    def summarize(self, values: AnyArray) -> FloatArray:
        arr = np.asarray(values, dtype=np.float64)
        if not self.sorted_edges:
            return self._summarize_by_search(arr)
        counts = _bin_counts(
            arr.reshape(1, -1),
            self.edges.reshape(1, -1),
            np.array([self.low], dtype=np.float64),
            np.array([self.high], dtype=np.float64),
            self.width,
        )[0]
        return np.concatenate([counts[: self.bins], counts[-2:]])

    def _summarize_by_search(self, arr: FloatArray) -> FloatArray:
        nulls = np.isnan(arr)
        present = arr[~nulls]
        out = np.zeros(self.size)
        if self.bins:
            where = np.searchsorted(self.edges, present, side="right")
            out[: self.bins] = np.bincount(where, minlength=self.bins)[: self.bins]
        out[-2] = nulls.sum()
        out[-1] = np.count_nonzero((present < self.low) | (present > self.high))
        return out

    def score(self, totals: AnyArray, rows: int) -> dict[str, Any]:
        present = rows - totals[-2]
        return {
            "kind": self.kind,
            "psi": psi(self.expected, totals[: self.bins])
            if self.expected is not None and present > 0
            else None,
            "null_rate": totals[-2] / rows if rows else 0.0,
            "reference_null_rate": self.null_rate,
            "out_of_range_share": totals[-1] / present if present > 0 else 0.0,
        }


class _Categorical:
    """Layout: one count per profiled category, "other", then nulls, then unseen values."""

    kind = "categorical"

    def __init__(self, profile: CategoricalProfile, *, boolean: bool, allowed: list[Any]) -> None:
        self.categories = list(profile.frequencies)
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.known = set(self.categories) | {str(a) for a in allowed}
        # a PII field's bundle records no values, so "unseen" has no reference to mean anything
        self.tracks_unseen = bool(self.known)
        self.expected = np.asarray([*profile.frequencies.values(), profile.other])
        self.boolean = boolean
        self.null_rate = profile.null_rate
        self.size = len(self.categories) + 3

    def _key(self, value: Any) -> str:
        return str(bool(value)).lower() if self.boolean else str(value)

    def summarize(self, values: AnyArray) -> AnyArray:
        out = np.zeros(self.size)
        other = len(self.categories)
        for value, n in Counter(values.tolist()).items():
            if value is None or (isinstance(value, float) and value != value):
                out[-2] += n
                continue
            key = self._key(value)
            slot = self.index.get(key)
            if slot is None:
                out[other] += n
                if self.tracks_unseen and key not in self.known:
                    out[-1] += n
            else:
                out[slot] += n
        return out

    def score(self, totals: AnyArray, rows: int) -> dict[str, Any]:
        present = rows - totals[-2]
        return {
            "kind": self.kind,
            "psi": psi(self.expected, totals[:-2]) if present > 0 else None,
            "null_rate": totals[-2] / rows if rows else 0.0,
            "reference_null_rate": self.null_rate,
            "unseen_share": totals[-1] / present if present > 0 else 0.0,
        }


class _Outputs:
    """Layout: class counts + other | confidence bins + [sum, n] | value bins."""

    def __init__(self, profile: OutputProfile) -> None:
        self.classes = list(profile.class_frequencies)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.class_expected = (
            np.asarray([*profile.class_frequencies.values(), 0.0]) if self.classes else None
        )
        self.confidence = _Numeric(profile.confidence) if profile.confidence else None
        self.confidence_mean = profile.confidence.mean if profile.confidence else None
        self.value = _Numeric(profile.value) if profile.value else None
        self.n_labels = len(self.classes) + 1 if self.classes else 0
        self.n_conf = self.confidence.bins + 2 if self.confidence else 0
        self.n_value = self.value.bins if self.value else 0
        self.size = self.n_labels + self.n_conf + self.n_value

    def summarize(self, output: ModelOutput) -> AnyArray:
        out = np.zeros(self.size)
        if self.n_labels and output.label is not None:
            for label, n in _label_counts(output.label):
                out[self.class_index.get(label, self.n_labels - 1)] += n
        if self.confidence is not None and output.probabilities is not None:
            probabilities = np.asarray(output.probabilities, dtype=np.float64)
            if probabilities.ndim == 2 and probabilities.size:
                top = probabilities.max(axis=1)
                start = self.n_labels
                bins = self.confidence.summarize(top)[: self.confidence.bins]
                out[start : start + self.confidence.bins] = bins
                out[start + self.confidence.bins] = float(top.sum())
                out[start + self.confidence.bins + 1] = top.size
        if self.value is not None and output.value is not None:
            values = np.asarray(output.value, dtype=np.float64).reshape(len(output), -1)[:, 0]
            start = self.n_labels + self.n_conf
            out[start:] = self.value.summarize(values)[: self.value.bins]
        return out

    def score(self, totals: AnyArray) -> dict[str, Any]:
        result: dict[str, Any] = {"psi": None, "mean_confidence": None}
        if self.class_expected is not None and totals[: self.n_labels].sum() > 0:
            result["psi"] = psi(self.class_expected, totals[: self.n_labels])
        if self.confidence is not None and self.confidence.expected is not None:
            start = self.n_labels
            conf = totals[start : start + self.n_conf]
            n = conf[-1]
            if n > 0:
                result["mean_confidence"] = conf[-2] / n
                result["confidence_psi"] = psi(
                    self.confidence.expected, conf[: self.confidence.bins]
                )
            result["reference_mean_confidence"] = self.confidence_mean
        if self.value is not None and self.value.expected is not None:
            values = totals[self.n_labels + self.n_conf :]
            if values.sum() > 0:
                result["psi"] = psi(self.value.expected, values)
        return result


class _NumericBlock:
    """The numeric features with sorted edges, binned together from one fields x rows block.

    ``summarize_into`` writes each feature's counts straight into its place in the monitor's
    summary vector (one gather through precomputed indices, not one slice per feature).
    """

    def __init__(self, members: list[tuple[str, _Numeric, slice]]) -> None:
        self.names = [name for name, _, _ in members]
        features = [feature for _, feature, _ in members]
        n_edges = max((f.edges.size for f in features), default=0)
        self.edges = np.full((len(features), n_edges), np.nan)
        for row, feature in zip(self.edges, features, strict=True):
            row[: feature.edges.size] = feature.edges
        self.low = np.array([f.low for f in features], dtype=np.float64)
        self.high = np.array([f.high for f in features], dtype=np.float64)
        self.width = max([n_edges + 1, *(f.bins for f in features)]) + 2
        source: list[int] = []
        target: list[int] = []
        for i, (_, feature, where) in enumerate(members):
            first, nulls = i * self.width, (i + 1) * self.width - 2
            source += [*range(first, first + feature.bins), nulls, nulls + 1]
            target += range(where.start, where.stop)
        self.source = np.array(source, dtype=np.intp)
        self.target = np.array(target, dtype=np.intp)

    def summarize_into(self, summary: FloatArray, values: FloatArray) -> None:
        """Write the counts of ``values`` (one row per member, in order) into ``summary``."""
        counts = _bin_counts(values, self.edges, self.low, self.high, self.width)
        summary[self.target] = counts.ravel()[self.source]


@dataclass
class _Chunk:
    time: float
    rows: int
    summary: FloatArray  # every feature's counts, then the outputs' (``DriftMonitor._places``)


class DriftMonitor:
    """The sliding window of one model version and its scores against the training profile."""

    def __init__(
        self, name: str, version: str, reference: Reference, config: DriftSettings
    ) -> None:
        self.name, self.version, self.digest = name, version, reference.digest
        self.config = config
        self.reference_rows = reference.profile.rows
        self.features: dict[str, _Numeric | _Categorical] = {}
        for spec in reference.schema.inputs:
            profile = reference.profile.features.get(spec.name)
            if isinstance(profile, NumericProfile):
                self.features[spec.name] = _Numeric(profile)
            elif isinstance(profile, CategoricalProfile):
                self.features[spec.name] = _Categorical(
                    profile, boolean=spec.type is FieldType.BOOL, allowed=list(spec.allowed or [])
                )
        self.outputs = _Outputs(reference.profile.outputs)
        # one summary vector per chunk: each feature's layout side by side, then the outputs'
        self._places: dict[str, slice] = {}
        offset = 0
        for feature_name, feature in self.features.items():
            self._places[feature_name] = slice(offset, offset + feature.size)
            offset += feature.size
        self._output_place = slice(offset, offset + self.outputs.size)
        self._size = offset + self.outputs.size
        self._block = _NumericBlock(
            [
                (feature_name, feature, self._places[feature_name])
                for feature_name, feature in self.features.items()
                if isinstance(feature, _Numeric) and feature.sorted_edges
            ]
        )
        self._chunks: deque[_Chunk] = deque()
        self._totals = np.zeros(self._size)
        self._rows = 0
        self._revision = 0  # counts every change of the window: see ``revision``
        self._lock = threading.Lock()

    def add(self, columns: Columns, output: ModelOutput, when: float) -> None:
        """Summarise one request's rows into the window (on the observer's thread)."""
        self.add_requests([columns], [output], when)

    def add_requests(
        self, requests: Sequence[Columns], outputs: Sequence[ModelOutput], when: float
    ) -> None:
        """Summarise several requests' rows as one window chunk (a drained batch, in order)."""
        output = ModelOutput.concat(outputs)
        names = [name for name in self.features if name in requests[0]]
        parts = _per_field(requests, names)
        rows = len(output) or sum(len(next(iter(request.values()))) for request in requests)
        summary = np.zeros(self._size)
        self._summarize_block(summary, parts)
        for name, field_parts in parts.items():
            summary[self._places[name]] = self.features[name].summarize(_joined(field_parts))
        summary[self._output_place] = self.outputs.summarize(output)
        chunk = _Chunk(when, rows, summary)
        with self._lock:
            self._chunks.append(chunk)
            self._totals += summary
            self._rows += rows
            self._revision += 1
            self._evict(when)

    def _summarize_block(self, summary: FloatArray, parts: dict[str, tuple[AnyArray, ...]]) -> None:
        """Bin the block's features together and take them out of ``parts``; leave them all to
        their own ``summarize`` unless every one is there as one flat column of equal length."""
        block = self._block
        if not block.names or any(name not in parts for name in block.names):
            return
        values = [np.asarray(_joined(parts[name]), dtype=np.float64) for name in block.names]
        shape = values[0].shape
        if len(shape) != 1 or any(column.shape != shape for column in values):
            return
        block.summarize_into(summary, np.vstack(values))
        for name in block.names:
            del parts[name]

    def _evict(self, now: float) -> None:
        horizon = now - self.config.window_s if self.config.window_s > 0 else None
        while self._chunks:
            oldest = self._chunks[0]
            too_many = self._rows - oldest.rows >= self.config.window_rows
            too_old = horizon is not None and oldest.time < horizon
            if not (too_many or too_old):
                break
            self._chunks.popleft()
            self._totals -= oldest.summary
            self._rows -= oldest.rows
            self._revision += 1

    def revision(self, now: float | None = None) -> int:
        """A number that changes whenever the window does (evicting as ``report`` would first):
        while it stays the same, so does the report."""
        with self._lock:
            self._evict(now if now is not None else time.time())
            return self._revision

    def report(self, now: float | None = None) -> dict[str, Any]:
        """Scores per feature and for the outputs, thresholds, window and reference (JSON-ready)."""
        t = self.config
        with self._lock:
            self._evict(now if now is not None else time.time())
            rows = self._rows
            totals = self._totals.copy()
            oldest = self._chunks[0].time if self._chunks else None
            newest = self._chunks[-1].time if self._chunks else None
        enough = rows >= self.config.min_rows
        features: dict[str, dict[str, Any]] = {}
        for name, feature in self.features.items():
            score = feature.score(totals[self._places[name]], rows)
            score["null_rate_change"] = score["null_rate"] - score["reference_null_rate"]
            reasons = []
            if score["psi"] is not None and score["psi"] > t.psi_threshold:
                reasons.append("psi")
            if abs(score["null_rate_change"]) > t.null_rate_threshold:
                reasons.append("null_rate_change")
            if score.get("unseen_share", 0.0) > t.unseen_threshold:
                reasons.append("unseen_share")
            if score.get("out_of_range_share", 0.0) > t.out_of_range_threshold:
                reasons.append("out_of_range_share")
            score["drifted"] = enough and bool(reasons)
            score["reasons"] = reasons if enough else []
            features[name] = _rounded(score)
        outputs = self.outputs.score(totals[self._output_place])
        outputs["drifted"] = (
            enough and outputs["psi"] is not None and outputs["psi"] > t.psi_threshold
        )
        drifted = sorted(name for name, s in features.items() if s["drifted"])
        status = "insufficient_data" if not enough else ("drift" if drifted else "ok")
        return {
            "model": self.name,
            "version": self.version,
            "digest": self.digest,
            "status": status,
            "drifted_features": drifted,
            "window": {
                "rows": rows,
                "max_rows": self.config.window_rows,
                "max_seconds": self.config.window_s or None,
                "min_rows": self.config.min_rows,
                "oldest": _iso(oldest),
                "newest": _iso(newest),
            },
            "reference": {"source": "bundle profile", "rows": self.reference_rows},
            "thresholds": {
                "psi": t.psi_threshold,
                "null_rate_change": t.null_rate_threshold,
                "unseen_share": t.unseen_threshold,
                "out_of_range_share": t.out_of_range_threshold,
            },
            "features": features,
            "outputs": _rounded(outputs),
        }


#: model, version, accepted (epoch seconds), validated columns, outputs
_Seen = tuple[str, str, float, Columns, ModelOutput]


def _seen_rows(seen: _Seen) -> int:
    return len(seen[4]) or 1


class DriftObserver:
    """Feeds each model version's window off the hot path and keeps the drift gauges current.

    Args:
        lookup: the reference (schema + profile) of a served model version, or None when it has
            no profile; called once per version, on the observer's thread.
        config: window and thresholds.
        metrics: where the gauges are; None to keep scores only for the JSON report.
    """

    name = "drift"

    def __init__(
        self,
        lookup: Callable[[str, str], Reference | None],
        config: DriftSettings,
        metrics: Metrics | None = None,
        *,
        maxsize: int = 10_000,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._lookup = lookup
        self._monitors: dict[tuple[str, str], DriftMonitor | None] = {}
        self._lock = threading.Lock()
        #: The window revision each monitor's gauges were last set from (observer thread only).
        self._gauged: dict[tuple[str, str], int] = {}
        self.queue: BackgroundQueue[_Seen] = BackgroundQueue(
            self.name,
            self._add,
            metrics=metrics,
            maxsize=maxsize,
            weigh=_seen_rows,
            max_weight=1024,
            interval=SUMMARY_INTERVAL_S,
            tick=self.refresh_gauges,
            tick_seconds=config.refresh_s,
        )

    def observe(self, event: PredictionEvent) -> None:
        """Queue the event's columns and outputs (drops and counts when full)."""
        self.queue.put((event.model, event.version, event.time, event.columns, event.output))

    def start(self) -> None:
        """Start the background thread."""
        self.queue.start()

    def close(self) -> None:
        """Take in what is queued and stop."""
        self.queue.close()

    def monitor(self, model: str, version: str) -> DriftMonitor | None:
        """The window of one model version (created from its reference on first use)."""
        key = (model, version)
        with self._lock:
            if key in self._monitors:
                return self._monitors[key]
        reference = self._lookup(model, version)
        created = DriftMonitor(model, version, reference, self.config) if reference else None
        with self._lock:
            return self._monitors.setdefault(key, created)

    def report(self, model: str, version: str) -> dict[str, Any] | None:
        """The JSON drift report of one model version; None when it has no profile."""
        monitor = self.monitor(model, version)
        return monitor.report() if monitor is not None else None

    def _add(self, batch: list[_Seen]) -> None:
        """Summarise a drained batch: one window chunk per model version, not per request."""
        groups: dict[tuple[str, str], list[_Seen]] = {}
        for seen in batch:
            groups.setdefault((seen[0], seen[1]), []).append(seen)
        for (model, version), events in groups.items():
            monitor = self.monitor(model, version)
            if monitor is not None:
                monitor.add_requests([e[3] for e in events], [e[4] for e in events], events[-1][2])

    def refresh_gauges(self) -> None:
        """Recompute every window's scores into the drift gauges."""
        m = self.metrics
        if m is None:
            return
        with self._lock:
            monitors = [mon for mon in self._monitors.values() if mon is not None]
        for monitor in monitors:
            key = (monitor.name, monitor.version)
            revision = monitor.revision()
            if self._gauged.get(key) == revision:
                continue  # the same window scores the same: its gauges already say so
            self._gauged[key] = revision
            report = monitor.report()
            m.drift_window_rows.labels(*key).set(report["window"]["rows"])
            if report["status"] == "insufficient_data":
                continue
            for feature, score in report["features"].items():
                if score["psi"] is not None:
                    m.drift_psi.labels(*key, feature).set(score["psi"])
                m.drift_null_change.labels(*key, feature).set(abs(score["null_rate_change"]))
                if "unseen_share" in score:
                    m.drift_unseen.labels(*key, feature).set(score["unseen_share"])
                if "out_of_range_share" in score:
                    m.drift_out_of_range.labels(*key, feature).set(score["out_of_range_share"])
            m.drifted_features.labels(*key).set(len(report["drifted_features"]))
            outputs = report["outputs"]
            if outputs["psi"] is not None:
                m.prediction_psi.labels(*key).set(outputs["psi"])
            if outputs.get("mean_confidence") is not None:
                m.mean_confidence.labels(*key).set(outputs["mean_confidence"])


def _per_field(requests: Sequence[Columns], names: list[str]) -> dict[str, tuple[AnyArray, ...]]:
    """Each named field's arrays over all ``requests``, in order (one ``itemgetter`` pass and a
    transpose in C, not one lookup per request and field)."""
    if len(names) == 1:
        return {names[0]: tuple(request[names[0]] for request in requests)}
    if not names:
        return {}
    per_field = zip(*map(itemgetter(*names), requests), strict=True)
    return dict(zip(names, per_field, strict=True))


def _joined(parts: tuple[AnyArray, ...]) -> AnyArray:
    """One field's arrays as one column (the array itself when there is one)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _label_counts(labels: AnyArray) -> list[tuple[str, int]]:
    """How often each predicted label occurs, by its ``str``."""
    if labels.ndim == 1 and labels.dtype.kind in "iubU":
        # str() of an int, bool or str is one-to-one with its value: count distinct values once
        values, counts = np.unique(labels, return_counts=True)
        return list(zip(map(str, values.tolist()), counts.tolist(), strict=True))
    return list(Counter(str(v) for v in labels.tolist()).items())


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        k: round(float(v), 6) if isinstance(v, (float, np.floating)) else v
        for k, v in scores.items()
    }


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None
