"""What is loaded now: served models by name and version, their state, and readiness.

A hot swap (``prepare`` -> ``install`` -> ``retire``) keeps two versions of a name resident only
while the old one drains: the new one is loaded and warmed up off to the side, switched in with
one assignment under the lock, and the old one is closed once no request holds it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import Manifest
from rtserve.bundle.naming import version_order_key
from rtserve.bundle.signature import TrustedKey, load_public_keys
from rtserve.engine.batcher import AdaptiveBatcher
from rtserve.engine.cache import ResponseCache
from rtserve.engine.loader import load, serving
from rtserve.engine.predictor import Predictor
from rtserve.errors import NotFoundError, NotReadyError, RtserveError
from rtserve.guard.per_model import ModelGuard
from rtserve.settings import Settings
from rtserve.types import ModelState

logger = logging.getLogger("rtserve.manager")


@dataclass
class ServedModel:
    """One model version in the server: its predictor, batcher and lifecycle state."""

    name: str
    version: str
    source: str
    state: ModelState = ModelState.LOADING
    reason: str = ""
    predictor: Predictor | None = None
    batcher: AdaptiveBatcher | None = None
    digest: str = ""
    platform: str = ""
    load_seconds: float = 0.0
    manifest: Manifest | None = None
    #: Admission, circuit breaker, fallback and output hardening (rtserve.guard).
    guard: ModelGuard | None = None
    #: Why ``platform`` answers (e.g. the ONNX export passed its parity gate, or why not).
    serving_reason: str = ""
    #: Responses by validated input (None: ``cache.max_entries`` is 0).
    cache: ResponseCache | None = None
    #: Requests routed to this version and not yet answered (the event loop counts them).
    inflight: int = 0
    #: The registry's model card for this version (None when not served from a registry).
    card: dict[str, Any] | None = None
    #: When this version became loaded (Unix time).
    since: float = field(default_factory=time.time)
    #: True when the failure (``state`` FAILED) was the warm-up parity check, not the load.
    warmup_failed: bool = False

    def idle(self) -> bool:
        """No request holds this version and its batcher has nothing queued or running."""
        batcher = self.batcher
        busy = batcher is not None and (batcher.queued > 0 or batcher.busy > 0)
        return self.inflight == 0 and not busy

    @property
    def ready(self) -> bool:
        """Whether this version answers requests now."""
        return self.state is ModelState.READY

    def require_ready(self) -> tuple[Predictor, AdaptiveBatcher]:
        """The predictor and batcher, or ``NotReadyError`` saying why not."""
        if self.state is not ModelState.READY or self.predictor is None or self.batcher is None:
            detail = f": {self.reason}" if self.reason else ""
            raise NotReadyError(
                f"model {self.name}:{self.version} is {self.state.value}{detail}", field="model"
            )
        return self.predictor, self.batcher


@dataclass
class ModelManager:
    """Loads bundles, warms them up and answers "which model answers this request"."""

    settings: Settings
    _models: dict[str, dict[str, ServedModel]] = field(default_factory=dict)
    _default: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Bundles that could not even be opened, with the reason (they keep the server unready).
    broken: dict[str, str] = field(default_factory=dict)
    #: Bundles still to be loaded at start-up; readiness waits for all of them.
    pending: int = 0
    #: The public keys of ``loading.trusted_keys``, read once (a bad file raises at once).
    trusted_keys: list[TrustedKey] = field(init=False)
    #: Per name: the last version change tried (from the registry) and how it ended.
    swaps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.trusted_keys = load_public_keys(self.settings.loading.trusted_keys)

    def load_all(self, sources: list[str], *, held: int = 0) -> None:
        """Load every bundle in turn; one bad bundle does not stop the others. ``held``: steps
        still to come after the loading (a rollout to apply), each of which lowers ``pending``
        when done, so that the server is not ready in between."""
        self.pending = len(sources) + held
        for source in sources:
            try:
                self.load(source)
            except RtserveError:
                pass  # recorded in ``broken`` and logged by ``load``
            except Exception:  # a bug or a framework crash: keep serving the others
                logger.exception("bundle %s could not be loaded", source)
                self.broken[str(source)] = "unexpected error while loading; see the log"
            finally:
                self.pending -= 1

    def load(self, source: str | Path) -> ServedModel:
        """Open, verify, load and warm up one bundle; a failure leaves it FAILED with the reason.

        The model becomes READY only if a warm-up on its validation sample reproduces the
        outputs recorded at build time.
        """
        label = str(source)
        try:
            bundle = Bundle.open(source, max_bytes=self.settings.loading.max_bundle_bytes)
        except RtserveError as exc:
            logger.error("bundle %s cannot be opened: %s", label, exc.message)
            self.broken[label] = exc.message
            raise
        served = self._served_for(bundle, label)
        self._register(served)
        return self._bring_up(served, bundle)

    def prepare(self, source: str | Path, card: dict[str, Any] | None = None) -> ServedModel:
        """Load and warm up a bundle beside what serves now, without serving it.

        Returns the version READY (hand it to ``install``) or FAILED with the reason; nothing
        routes to it meanwhile, so readiness and the answering version are untouched.
        """
        label = str(source)
        try:
            bundle = Bundle.open(source, max_bytes=self.settings.loading.max_bundle_bytes)
        except RtserveError as exc:
            logger.error("bundle %s cannot be opened: %s", label, exc.message)
            failed = ServedModel(name="", version="", source=label, card=card)
            failed.state, failed.reason = ModelState.FAILED, exc.message
            return failed
        served = self._served_for(bundle, label)
        served.card = card
        return self._bring_up(served, bundle)

    def _served_for(self, bundle: Bundle, label: str) -> ServedModel:
        return ServedModel(
            name=bundle.name,
            version=bundle.version,
            source=label,
            digest=bundle.digest,
            platform=bundle.manifest.runtime.adapter,
            manifest=bundle.manifest,
        )

    def _bring_up(self, served: ServedModel, bundle: Bundle) -> ServedModel:
        started = time.perf_counter()
        try:
            choice = serving(
                bundle.manifest, force_native=self.settings.loading.force_native_runtime
            )
            predictor = self._predictor(bundle, force_native=not choice.optimized)
            served.state = ModelState.WARMING
            report = predictor.check_parity(self.settings.loading.parity_tolerance)
            if not report.passed and choice.optimized:
                # The export matched at build; if this ONNX Runtime disagrees, serve natively.
                logger.warning(
                    "model %s:%s: the ONNX export's %s; serving with the native runtime",
                    served.name,
                    served.version,
                    report.describe(),
                )
                choice = replace(
                    serving(bundle.manifest, force_native=True),
                    reason=f"the ONNX export's {report.describe()}",
                )
                predictor = self._predictor(bundle, force_native=True)
                report = predictor.check_parity(self.settings.loading.parity_tolerance)
            if not report.passed:
                served.warmup_failed = True
                raise NotReadyError(report.describe())
            served.platform, served.serving_reason = choice.runtime, choice.reason
            guard = ModelGuard.build(
                served.name,
                self.settings,
                predictor.schema.outputs,
                predictor.schema.field_names,
                bundle.manifest.fallback,
                bundle.manifest.output,
            )
        except RtserveError as exc:
            served.state, served.reason = ModelState.FAILED, exc.message
            logger.error("model %s:%s failed to load: %s", served.name, served.version, exc.message)
            return served
        except Exception as exc:  # a framework error while loading is a failed model, not a crash
            served.state = ModelState.FAILED
            served.reason = f"{type(exc).__name__}: {exc}"
            logger.exception("model %s:%s failed to load", served.name, served.version)
            return served
        served.predictor = predictor
        served.guard = guard
        served.batcher = AdaptiveBatcher(
            predictor.run,
            max_batch_size=self.settings.batching.max_batch_size,
            max_wait=self.settings.batching.max_wait_s,
            concurrency=self.settings.batching.runtime_threads
            if predictor.runtime.thread_safe
            else 1,
            name=served.name,
            inline_below=self.settings.batching.inline_predict_s,
        )
        if self.settings.cache.max_entries > 0:
            served.cache = ResponseCache(self.settings.cache.max_entries, self.settings.cache.ttl_s)
        served.load_seconds = time.perf_counter() - started
        served.state = ModelState.READY
        logger.info(
            "model %s:%s ready in %.2fs on %s (%s; %s)",
            served.name,
            served.version,
            served.load_seconds,
            served.platform,
            served.serving_reason,
            report.describe(),
        )
        return served

    def _predictor(self, bundle: Bundle, *, force_native: bool) -> Predictor:
        return load(
            bundle,
            trust_pickle=self.settings.loading.trust_pickle,
            pinned_digest=self.settings.loading.pinned_digests.get(bundle.name),
            strict_versions=self.settings.loading.strict_versions,
            force_native=force_native,
            trusted_keys=self.trusted_keys,
            require_signature=self.settings.loading.require_signature,
        )

    def _register(self, served: ServedModel) -> None:
        with self._lock:
            versions = self._models.setdefault(served.name, {})
            if served.version in versions:
                raise RtserveError(
                    f"model {served.name}:{served.version} is given twice; each bundle must have "
                    "a distinct name or version",
                    field="bundles",
                )
            versions[served.version] = served
            # The unversioned routes answer with the newest version by version order, whatever
            # order the bundles were given in.
            self._default[served.name] = max(versions, key=version_order_key)

    def install(self, served: ServedModel) -> ServedModel | None:
        """Make a READY version the one unversioned calls get, in one step under the lock.

        Returns the version that answered before (None if there was none, or it is this one);
        requests already routed to it finish on it (they hold it), new ones get ``served``.
        """
        if not served.ready:
            raise NotReadyError(
                f"model {served.name}:{served.version} is {served.state.value}; only a READY "
                "version is switched to",
                field="model",
            )
        with self._lock:
            versions = self._models.setdefault(served.name, {})
            current = versions.get(served.version)
            if current is not None and current is not served and current.ready:
                served = current  # already resident (side by side): switch to it
            else:
                versions[served.version] = served
            previous_key = self._default.get(served.name)
            self._default[served.name] = served.version
        previous = versions.get(previous_key) if previous_key is not None else None
        return previous if previous is not served else None

    def add(self, served: ServedModel) -> None:
        """Make a READY version resident beside the default one (explicit version routes only)."""
        with self._lock:
            versions = self._models.setdefault(served.name, {})
            if served.version in versions:
                raise RtserveError(
                    f"model {served.name}:{served.version} is already loaded", field="version"
                )
            versions[served.version] = served

    def default_version(self, name: str) -> str | None:
        """The version unversioned calls of ``name`` get, if the name is served."""
        return self._default.get(name)

    def retire(self, served: ServedModel, timeout: float = 60.0) -> bool:
        """Stop routing to a version that is not the default, wait until it drains, close it.

        Blocks (call it from a thread): requests already holding the version finish on it.
        Returns False if it was still busy after ``timeout`` seconds (it is closed anyway;
        its batcher lets running batches finish).
        """
        with self._lock:
            versions = self._models.get(served.name, {})
            if self._default.get(served.name) == served.version:
                raise RtserveError(
                    f"model {served.name}:{served.version} answers the unversioned calls; switch "
                    "to another version before unloading it",
                    field="version",
                )
            if versions.get(served.version) is served:
                del versions[served.version]
        # A request routed a moment before the switch increments ``inflight`` in the same
        # event-loop step; a short grace covers a thread reading between those two lines.
        time.sleep(0.05)
        deadline = time.monotonic() + timeout
        drained = served.idle()
        while not drained and time.monotonic() < deadline:
            time.sleep(0.01)
            drained = served.idle()
        if served.batcher is not None:
            served.batcher.close()
        served.state = ModelState.UNLOADED
        return drained

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The served model for ``name`` (its newest loaded version unless ``version`` is given)."""
        versions = self._models.get(name)
        if not versions:
            raise NotFoundError(
                f"model {name!r} is not served here; served models: {sorted(self._models)}",
                field="model_name",
            )
        key = version if version is not None else self._default[name]
        served = versions.get(key)
        if served is None:
            raise NotFoundError(
                f"model {name!r} has no version {version!r}; served versions: {sorted(versions)}",
                field="model_version",
            )
        return served

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` that can be asked for explicitly."""
        self.get(name)
        return sorted(self._models[name], key=version_order_key)

    def all(self) -> list[ServedModel]:
        """Every served model version."""
        return [m for versions in self._models.values() for m in versions.values()]

    @property
    def ready(self) -> bool:
        """True when every bundle has loaded, none is broken, and every model is READY."""
        models = self.all()
        return (
            self.pending == 0 and not self.broken and bool(models) and all(m.ready for m in models)
        )

    def close(self) -> None:
        """Stop every batcher (after running batches finish) and mark models unloaded."""
        for model in self.all():
            if model.batcher is not None:
                model.batcher.close()
            model.state = ModelState.UNLOADED
