"""Segments: the scored rows grouped by the values of one field, or of a crossing of fields.

``--segment-by country,channel`` makes one set of segments per field (``country=FR``, ...,
``channel=web``, ...); ``country+channel`` crosses them (``country+channel=FR, web``). Each set
keeps its ``max_segments`` most frequent values (ties by value); the remaining rows form one
``(other)`` segment, and the report says how many values it merges. A missing value is a segment
of its own, ``(missing)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rtserve.types import AnyArray

#: Segments per field (or crossing) unless ``--max-segments`` says otherwise.
DEFAULT_MAX_SEGMENTS = 20
#: The segment of the values beyond the most frequent ones.
OTHER = "(other)"


class SegmentSpecError(ValueError):
    """``--segment-by`` does not read as a list of fields (the CLI shows it as a usage error)."""


@dataclass(frozen=True)
class Segment:
    """Rows sharing a value: ``field`` (``country`` or ``country+channel``), ``value``, rows."""

    field: str
    value: str
    index: AnyArray

    @property
    def name(self) -> str:
        """``country=FR``."""
        return f"{self.field}={self.value}"


@dataclass(frozen=True)
class Grouping:
    """One field's (or crossing's) segments and how many values went to ``(other)``."""

    field: str
    segments: list[Segment]
    distinct: int
    other_values: int
    other_rows: int


def parse_spec(text: str | None) -> list[tuple[str, ...]]:
    """``a,b+c`` -> ``[("a",), ("b", "c")]``.

    Raises:
        SegmentSpecError: an empty name, a field named twice in a crossing, a set given twice.
    """
    if text is None or not text.strip():
        return []
    specs: list[tuple[str, ...]] = []
    for part in text.split(","):
        names = tuple(n.strip() for n in part.split("+"))
        if any(not n for n in names):
            raise SegmentSpecError(
                f"{text!r}: {part.strip()!r} has an empty field name; write fields separated by "
                "',' (one set of segments each) or '+' (a crossing), e.g. country,country+channel"
            )
        if len(set(names)) != len(names):
            raise SegmentSpecError(f"{text!r}: {part.strip()!r} names a field twice")
        if names in specs:
            raise SegmentSpecError(f"{text!r}: {part.strip()!r} is given twice")
        specs.append(names)
    return specs


def fields_of(specs: Sequence[tuple[str, ...]]) -> list[str]:
    """Every field the specs name, once, in order."""
    return list(dict.fromkeys(name for spec in specs for name in spec))


def group(
    values: Mapping[str, AnyArray], specs: Sequence[tuple[str, ...]], max_segments: int
) -> list[Grouping]:
    """The segments of each spec, most frequent first, the rest merged into ``(other)``."""
    groupings = []
    for spec in specs:
        label = "+".join(spec)
        if len(spec) == 1:
            keys = values[spec[0]]
        else:
            columns = [values[name] for name in spec]
            keys = np.asarray(
                [", ".join(parts) for parts in zip(*columns, strict=True)], dtype=object
            )
        counts = Counter(keys.tolist())
        ranked = sorted(counts, key=lambda v: (-counts[v], v))
        shown, rest = ranked[:max_segments], ranked[max_segments:]
        segments = [Segment(label, v, np.flatnonzero(keys == v)) for v in shown]
        other_rows = sum(counts[v] for v in rest)
        if rest:
            merged = np.flatnonzero(np.isin(keys, np.asarray(rest, dtype=object)))
            segments.append(Segment(label, OTHER, merged))
        groupings.append(Grouping(label, segments, len(ranked), len(rest), other_rows))
    return groupings
