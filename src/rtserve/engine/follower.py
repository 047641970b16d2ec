"""Serve what the registry's stage pointers say, and follow them as they move (hot swap).

Why polling: one cheap read of the followed pointers every ``registry.poll_interval_s`` works
the same on SQLite and PostgreSQL, needs no broker and no open connection to the registry, and
bounds how stale a server can be; ``POST /v1/models/{name}:reload`` checks at once.

A move is handled off the event loop: the new version is loaded and warmed up (parity on its
validation sample) beside the old one, switched in atomically only if it passed, and the old
one is closed after it drains. A version that fails is never switched to: the old one keeps
answering, and the refusal goes to the audit log, the swap metric and the model's status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtserve.engine.manager import ModelManager, ServedModel
from rtserve.errors import NotReadyError, RtserveError
from rtserve.observability.threads import name_os_thread
from rtserve.registry import Registry
from rtserve.settings import RegistrySettings
from rtserve.types import ModelState

logger = logging.getLogger("rtserve.follower")

#: Outcomes of a version change (the ``outcome`` label of ``rtserve_model_swaps_total``).
SWAPPED, REFUSED, WARMUP_FAILED = "swapped", "refused", "warmup_failed"
SwapHook = Callable[[str, str], None]


def open_registry(settings: RegistrySettings) -> Registry:
    """The registry ``settings.url`` names: a directory, or a database URL with a store."""
    url = settings.url or ""
    if "://" in url:
        return Registry.open(url=url, store=settings.store)
    return Registry.open(url)


@dataclass
class Followed:
    """One followed ``NAME@REF``: the pointer generation and version last acted on."""

    spec: str
    name: str
    ref: str
    generation: int = -1
    version: str | None = None


@dataclass
class RegistryFollower:
    """Loads the followed specs at start, then polls their pointers and swaps on each move."""

    manager: ModelManager
    registry: Registry
    settings: RegistrySettings
    on_swap: SwapHook | None = None
    followed: dict[str, Followed] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _drains: list[threading.Thread] = field(default_factory=list)
    _cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for spec in self.settings.follow:
            name, _, ref = spec.partition("@")
            self.followed[name] = Followed(spec, name, ref)
        if self.settings.cache_dir:
            self._cache_dir = Path(self.settings.cache_dir)
            self._cache_dir.mkdir(parents=True, exist_ok=True)

    # --- lifecycle --------------------------------------------------------------------------

    def load_initial(self) -> None:
        """Resolve and load every followed spec once (the start-up load; readiness waits)."""
        for item in self.followed.values():
            try:
                status = self.check(item.name, reason="start-up")
                if status["outcome"] not in (SWAPPED, "unchanged"):
                    self.manager.broken[item.spec] = str(status.get("reason", ""))
            except Exception as exc:  # noqa: BLE001 - keep loading the others; unready says why
                message = exc.message if isinstance(exc, RtserveError) else repr(exc)
                logger.error("cannot serve %s from the registry: %s", item.spec, message)
                self.manager.broken[item.spec] = message
            finally:
                self.manager.pending -= 1

    def start(self) -> None:
        """Poll the followed pointers in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._poll, name="rtserve-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling (a swap under way is abandoned before it switches), let old versions
        finish draining, then release the registry."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in [self._thread, *self._drains]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self.registry.close()

    def _poll(self) -> None:
        name_os_thread()
        refs = [(f.name, f.ref) for f in self.followed.values()]
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                pointers = self.registry.pointers(refs)
            except Exception as exc:  # noqa: BLE001 - a registry outage must not stop serving
                logger.warning("registry poll failed (serving on unchanged): %s", exc)
                continue
            for (name, _ref), pointer in pointers.items():
                item = self.followed[name]
                if pointer is not None and pointer.generation != item.generation:
                    try:
                        self.check(name, reason=f"{item.spec} moved")
                    except Exception:  # logged; the old version keeps serving
                        logger.exception("following %s failed", item.spec)

    # --- one check ----------------------------------------------------------------------------

    def check(self, name: str, *, reason: str = "reload", force: bool = False) -> dict[str, Any]:
        """Read ``name``'s followed pointer now and swap if it moved; returns the outcome.

        ``force`` retries a version that failed before (an admin reload); the poll does not,
        so a broken version is tried once per pointer move, not every interval.
        """
        with self._lock:
            item = self.followed[name]
            pointer = self.registry.pointer(name, item.ref)
            current = self.manager.default_version(name)
            if pointer.version is None:
                raise RtserveError(
                    f"{item.spec} points at no version; promote one with `rtserve registry "
                    f"promote {name} VERSION --to {item.ref}`",
                    field="registry.follow",
                )
            if pointer.version == current:
                item.generation, item.version = pointer.generation, pointer.version
                return {"model": name, "version": current, "outcome": "unchanged"}
            last = self.manager.swaps.get(name, {})
            if (
                not force
                and last.get("version") == pointer.version
                and last.get("generation") == pointer.generation
            ):
                return dict(last)
            if self._stop.is_set():
                return {"model": name, "version": current, "outcome": "stopping"}
            return self._swap(item, pointer.version, pointer.generation, current, reason)

    def _swap(
        self, item: Followed, version: str, generation: int, current: str | None, reason: str
    ) -> dict[str, Any]:
        started = time.perf_counter()
        subject = f"{item.name}@{version}"
        before = {"version": current}
        candidate = self._candidate(item.name, version)
        seconds = round(time.perf_counter() - started, 3)
        if not candidate.ready:
            outcome = WARMUP_FAILED if candidate.warmup_failed else REFUSED
            event = "warmup-failed" if candidate.warmup_failed else "refused-load"
            status = self._status(item, version, generation, outcome, candidate.reason, seconds)
            self._audit(event, subject, candidate.reason, before, {"version": current, **status})
            logger.error(
                "%s not switched to (%s): %s; %s keeps serving",
                subject,
                outcome,
                candidate.reason,
                current or "nothing",
            )
            self._count(item.name, outcome)
            return status
        if self._stop.is_set():  # shutting down: never switch half-way through a drain
            self._close(candidate)
            return {"model": item.name, "version": current, "outcome": "stopping"}
        self._audit("load", subject, reason, None, {"digest": candidate.digest, "seconds": seconds})
        previous = self.manager.install(candidate)
        self.manager.broken.pop(item.spec, None)
        item.generation, item.version = generation, version
        status = self._status(item, version, generation, SWAPPED, reason, seconds)
        if current is not None:
            self._audit("swap", f"{item.name}@{version}", reason, before, {"version": version})
        self._count(item.name, SWAPPED)
        logger.info(
            "%s now answers %s (loaded and warmed up in %.2fs)", subject, item.spec, seconds
        )
        if previous is not None:
            drain = threading.Thread(
                target=self._retire, args=(previous,), name="rtserve-drain", daemon=True
            )
            self._drains = [t for t in self._drains if t.is_alive()] + [drain]
            drain.start()
        return status

    def load_version(self, name: str, version: str) -> dict[str, Any]:
        """Load a registry version beside the default one (explicit version routes only)."""
        subject = f"{name}@{version}"
        found = self.registry.version(name, version)
        path = self.registry.store.local_path(found.digest, self._cache_dir)
        candidate = self.manager.prepare(path, card=found.card.to_dict())
        if not candidate.ready:
            event = "warmup-failed" if candidate.warmup_failed else "refused-load"
            self._audit(event, subject, candidate.reason, None, None)
            raise NotReadyError(f"{subject} cannot be served: {candidate.reason}", field="version")
        try:
            self.manager.add(candidate)
        except RtserveError:
            self._close(candidate)
            raise
        self._audit("load", subject, "admin load", None, {"digest": candidate.digest})
        return {"model": name, "version": version, "state": candidate.state.value}

    def unload_version(self, name: str, version: str) -> dict[str, Any]:
        """Unload a version that does not answer unversioned calls, after it drains."""
        served = self.manager.get(name, version)
        drained = self.manager.retire(served, timeout=self.settings.drain_timeout_s)
        note = "admin unload" if drained else "admin unload; closed while still busy"
        self._audit("unload", f"{name}@{version}", note, None, None)
        return {"model": name, "version": version, "state": served.state.value}

    def _retire(self, previous: ServedModel) -> None:
        drained = self.manager.retire(previous, timeout=self.settings.drain_timeout_s)
        note = "drained" if drained else f"still busy after {self.settings.drain_timeout_s}s"
        self._audit("unload", f"{previous.name}@{previous.version}", note, None, None)

    def _status(
        self, item: Followed, version: str, generation: int, outcome: str, reason: str, s: float
    ) -> dict[str, Any]:
        status = {
            "model": item.name,
            "spec": item.spec,
            "version": version,
            "generation": generation,
            "outcome": outcome,
            "reason": reason,
            "seconds": s,
            "at": time.time(),
        }
        self.manager.swaps[item.name] = status
        return dict(status)

    def _candidate(self, name: str, version: str) -> ServedModel:
        """``name@version`` READY to switch to, or FAILED with the reason; a version already
        resident (loaded side by side with ``:load``) is reused, not loaded again."""
        subject = f"{name}@{version}"
        try:
            resident = self.manager.get(name, version)
        except RtserveError:
            resident = None
        if resident is not None and resident.ready:
            return resident
        try:
            found = self.registry.version(name, version)
            path = self.registry.store.local_path(found.digest, self._cache_dir)
        except RtserveError as exc:
            failed = ServedModel(name=name, version=version, source=subject)
            failed.state, failed.reason = ModelState.FAILED, exc.message
            return failed
        candidate = self.manager.prepare(path, card=found.card.to_dict())
        if candidate.ready and (candidate.name, candidate.version) != (name, version):
            self._close(candidate)
            failed = ServedModel(name=name, version=version, source=subject)
            failed.state = ModelState.FAILED
            failed.reason = f"the artifact of {subject} holds {candidate.name}:{candidate.version}"
            return failed
        return candidate

    def _close(self, served: ServedModel) -> None:
        if served.batcher is not None:
            served.batcher.close()

    def _audit(self, action: str, subject: str, reason: str, before: Any, after: Any) -> None:
        try:
            self.registry.audit_event(
                action,
                actor=self.settings.actor,
                subject=subject,
                reason=reason,
                before=before,
                after=after,
            )
        except Exception as exc:  # noqa: BLE001 - serving goes on; the log keeps the event
            logger.error("audit event %s %s not recorded: %s", action, subject, exc)

    def _count(self, name: str, outcome: str) -> None:
        if self.on_swap is not None:
            self.on_swap(name, outcome)
