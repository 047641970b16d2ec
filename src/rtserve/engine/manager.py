"""What is loaded now: served models by name and version, their state, and readiness."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import Manifest
from rtserve.bundle.naming import version_order_key
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

    def load_all(self, sources: list[str]) -> None:
        """Load every bundle in turn; one bad bundle does not stop the others."""
        self.pending = len(sources)
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
        import time

        started = time.perf_counter()
        label = str(source)
        try:
            bundle = Bundle.open(source, max_bytes=self.settings.loading.max_bundle_bytes)
        except RtserveError as exc:
            logger.error("bundle %s cannot be opened: %s", label, exc.message)
            self.broken[label] = exc.message
            raise
        served = ServedModel(
            name=bundle.name,
            version=bundle.version,
            source=label,
            digest=bundle.digest,
            platform=bundle.manifest.runtime.adapter,
            manifest=bundle.manifest,
        )
        self._register(served)
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
