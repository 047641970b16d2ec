"""A data plane over the fraud bundle whose observer keeps every event (tests of reporting)."""

from __future__ import annotations

from pathlib import Path

from rtserve.engine.dataplane import DataPlane
from rtserve.engine.manager import ModelManager
from rtserve.events import PredictionEvent
from rtserve.settings import Settings


class Recorder:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    def observe(self, event: PredictionEvent) -> None:
        self.events.append(event)


def observed_plane(bundle_dir: Path) -> tuple[DataPlane, Recorder]:
    """A data plane serving ``bundle_dir``, with a ``Recorder`` as its only observer."""
    manager = ModelManager(Settings.load())
    manager.load(bundle_dir)
    recorder = Recorder()
    return DataPlane(manager, [recorder]), recorder
