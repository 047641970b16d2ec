"""The operations every transport calls: health, metadata, inference in both protocols."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from rtserve.bundle.jsonschema import record_schema
from rtserve.bundle.naming import version_order_key
from rtserve.bundle.schema import Schema
from rtserve.bundle.validator import Validator
from rtserve.engine.batcher import AdaptiveBatcher
from rtserve.engine.manager import ModelManager, ServedModel
from rtserve.engine.predictions import Predictions
from rtserve.engine.rollout import VARIANT_HEADER, Rollouts, ShadowCopy
from rtserve.errors import AccessError, InputError, NotFoundError, ValidationError
from rtserve.events import BatchInfo, Observer, PredictionEvent, RequestPart, RequestTrace
from rtserve.guard.auth import not_found_unlisted
from rtserve.guard.deadline import Deadline, DeadlinePolicy
from rtserve.guard.fallback import FALLBACK_HEADER
from rtserve.guard.limits import (
    RequestLimits,
    check_json_depth,
    check_rows,
    check_strings,
    rows_of,
)
from rtserve.observability.redaction import withhold_pii
from rtserve.protocol import records, v2
from rtserve.protocol.v2.tensors import TensorLimits
from rtserve.rollout.split import PINNED
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns, ModelState
from rtserve.version import rtserve_version

T = TypeVar("T")
#: The model states of the Open Inference Protocol's repository index (as Triton reports them).
_INDEX_STATES = {
    ModelState.LOADING: "LOADING",
    ModelState.WARMING: "LOADING",
    ModelState.READY: "READY",
    ModelState.FAILED: "UNAVAILABLE",
    ModelState.UNLOADED: "UNAVAILABLE",
}
#: Bodies larger than this are decoded and validated off the event loop.
OFFLOAD_BYTES = 64 << 10
SERVER_NAME = "rtserve"
#: Response header naming the model version that answered (both protocols; the body says it too).
VERSION_HEADER = "RTSERVE-Model-Version"


@dataclass(frozen=True)
class Reply:
    """A transport-neutral answer: JSON bytes plus any protocol headers."""

    body: bytes
    headers: dict[str, str]


class DataPlane:
    """Transport-neutral request handling over a ``ModelManager``.

    Every prediction, whatever the protocol, goes through ``route`` (the served version),
    ``answer`` (the one place where the cache, the model's guard and the batcher are called) and
    ``report`` (the one place where the observers: metrics, drift, decision log, are told).
    """

    def __init__(self, manager: ModelManager, observers: Sequence[Observer] = ()) -> None:
        self.manager = manager
        self.observers = list(observers)
        #: Traffic policies (canary, A/B, shadows) by model name; ``route`` asks them.
        self.rollouts = Rollouts(manager)
        self.draining = False
        self.limits = RequestLimits.from_settings(manager.settings)
        self.tensor_limits = TensorLimits.from_settings(manager.settings.limits)
        self.deadlines = DeadlinePolicy.from_settings(manager.settings)
        #: With authentication on, a 404 names only the model asked for, never the served ones.
        self.unlisted = manager.settings.auth.enabled
        self._server_metadata = v2.encode_server_metadata(
            name=SERVER_NAME, version=rtserve_version(), extensions=v2.EXTENSIONS
        )

    def _served(self, name: str, version: str | None) -> ServedModel:
        """``manager.get``, whose 404 lists the served models unless ``unlisted``."""
        try:
            return self.manager.get(name, version)
        except NotFoundError as exc:
            if not self.unlisted:
                raise
            raise not_found_unlisted(exc, name, version) from None

    # --- health ---------------------------------------------------------------------------

    def live(self) -> bool:
        """The process answers; true even while models load or the server drains."""
        return True

    def ready(self) -> bool:
        """Every served model is READY and the server is not shutting down."""
        return self.manager.ready and not self.draining

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether one model (version) can answer now; unknown names raise ``NotFoundError``."""
        return self._served(name, version).ready and not self.draining

    # --- metadata -------------------------------------------------------------------------

    def server_metadata(self) -> bytes:
        """Open Inference Protocol server metadata."""
        return self._server_metadata

    def repository_index(self) -> list[dict[str, Any]]:
        """Every served model version, Open Inference Protocol repository-index style.

        States are the protocol's (``READY``, ``LOADING``, ``UNAVAILABLE``) with the reason when
        a version cannot answer; the server's own state names are in ``models()``.
        """
        return [
            {
                "name": served.name,
                "version": served.version,
                "state": _INDEX_STATES[served.state],
                **({"reason": served.reason} if served.reason else {}),
            }
            for served in self._sorted_models()
        ]

    def models(self) -> list[dict[str, Any]]:
        """Records-API listing: each model name, the version unversioned calls get, and every
        served version with its state and digest."""
        listing: dict[str, dict[str, Any]] = {}
        for served in self._sorted_models():
            entry = listing.setdefault(
                served.name,
                {
                    "name": served.name,
                    "default_version": self.manager.get(served.name).version,
                    "versions": [],
                },
            )
            entry["versions"].append(
                {
                    "version": served.version,
                    "state": served.state.value,
                    "reason": served.reason or None,
                    "digest": served.digest,
                }
            )
        return list(listing.values())

    def _sorted_models(self) -> list[ServedModel]:
        return sorted(self.manager.all(), key=lambda m: (m.name, version_order_key(m.version)))

    def model_metadata(self, name: str, version: str | None) -> bytes:
        """Open Inference Protocol model metadata (inputs/outputs as tensors)."""
        served = self._served(name, version)
        schema = _schema_of(served)
        return v2.encode_model_metadata(
            name=served.name,
            versions=self.manager.versions(name),
            platform=served.platform,
            inputs=v2.input_metadata(schema),
            outputs=v2.output_metadata(schema),
        )

    def model_description(self, name: str, version: str | None) -> dict[str, Any]:
        """Records-API model description: JSON Schema of a record, version, digest, state."""
        served = self._served(name, version)
        manifest = served.manifest
        return {
            "name": served.name,
            "version": served.version,
            "versions": self.manager.versions(name),
            "digest": served.digest,
            "state": served.state.value,
            "reason": served.reason or None,
            "runtime": served.platform,
            "runtime_reason": served.serving_reason or None,
            "cache": None if served.cache is None else asdict(served.cache.stats()),
            "created_at": manifest.created_at.isoformat() if manifest else None,
            "description": manifest.description if manifest else "",
            "input_schema": record_schema(manifest.model_schema) if manifest else None,
            "outputs": manifest.model_schema.outputs.model_dump(mode="json") if manifest else None,
            "card": served.card,
            "last_swap": self.manager.swaps.get(served.name),
        }

    def model_versions(self, name: str) -> dict[str, Any]:
        """Admin view of a name: every resident version, which one answers unversioned calls,
        and how the last version change (from the registry) ended."""
        self._served(name, None)
        default = self.manager.default_version(name)
        return {
            "name": name,
            "default_version": default,
            "last_swap": self.manager.swaps.get(name),
            "versions": [
                {
                    "version": served.version,
                    "default": served.version == default,
                    "state": served.state.value,
                    "reason": served.reason or None,
                    "digest": served.digest,
                    "since": served.since,
                    "in_flight": served.inflight,
                }
                for served in self._sorted_models()
                if served.name == name
            ],
        }

    def rollout_status(self, name: str) -> dict[str, Any]:
        """The rollout applied to ``name`` (``active`` false when none; ``problem`` says why a
        configured one is not applied, e.g. a version that cannot be loaded)."""
        self._served(name, None)
        live = self.rollouts.live.get(name)
        problem = self.rollouts.problems.get(name)
        if live is None:
            return {"model": name, "active": False, "problem": problem, "variants": {},
                    "shadows": [], "gate": None, "decisions": []}  # fmt: skip
        return {"active": True, "problem": problem, **live.status()}

    # --- inference ------------------------------------------------------------------------
    # Every prediction, whatever the protocol, takes the same steps: ``route`` (which served
    # model version answers), the protocol's decode and validation against that version's
    # schema, ``answer`` (cache -> guard -> batcher -> runtime), ``report`` (trace -> observers),
    # and the protocol's encoding. The request's ``RequestTrace`` is passed along explicitly;
    # each step writes its facts into it.

    async def infer_v2(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None,
        trace: RequestTrace,
        deadline: Deadline | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """``POST /v2/models/{name}[/versions/{v}]/infer``."""
        document = body[:header_length] if header_length else body
        served = self.route(name, version, trace, headers, document)
        served.inflight += 1  # the version drains (a hot swap waits) until this request ends
        try:
            return await self._infer_v2(served, body, header_length, trace, deadline)
        except Exception as exc:
            self.fail(trace, exc)
            raise
        finally:
            served.inflight -= 1

    async def _infer_v2(
        self,
        served: ServedModel,
        body: bytes,
        header_length: int | None,
        trace: RequestTrace,
        deadline: Deadline | None,
    ) -> Reply:
        trace.protocol = "v2"
        predictor, batcher = served.require_ready()
        limits, tensor_limits = self.limits, self.tensor_limits

        def decode() -> tuple[v2.InferRequest, Columns]:
            request = v2.decode_infer_request(body, header_length, tensor_limits)
            document = body[:header_length] if header_length else body
            check_json_depth(document, limits.max_json_depth)
            v2.check_requested_outputs(request, predictor.schema)  # refuse before predicting
            raw = v2.columns_from_inputs(request, predictor.schema)
            check_rows(rows_of(raw), limits.max_instances, "inputs")
            columns = predictor.validator.columns(raw)
            if len(body) > limits.max_string_length:  # else no string can be that long
                check_strings(columns, limits.max_string_length)
            return request, columns

        started = time.perf_counter()
        request, columns = await _decode(decode, len(body), predictor.schema, trace)
        output, fallback = await self.answer(served, batcher, columns, trace, deadline)
        self.report(served, columns, output, trace, started)
        tensors = v2.output_tensors(Predictions(output, predictor.schema.outputs))
        parameters: dict[str, str] = {"fallback": fallback} if fallback else {}
        if trace.variant:
            parameters["variant"] = trace.variant
        payload, headers = v2.encode_infer_response(
            model_name=served.name,
            model_version=served.version,
            request_id=request.id,
            outputs=tensors,
            requested=request.outputs,
            binary_default=request.binary_outputs_default,
            parameters=parameters or None,
        )
        if fallback:
            headers[FALLBACK_HEADER] = fallback
        headers[VERSION_HEADER] = served.version
        if trace.variant:
            headers[VARIANT_HEADER] = trace.variant
        return Reply(payload, headers)

    async def predict_records(
        self,
        name: str,
        version: str | None,
        body: bytes,
        trace: RequestTrace,
        deadline: Deadline | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """``POST /v1/models/{name}:predict`` with ``{"instances": [...]}``."""
        served = self.route(name, version, trace, headers, body)
        served.inflight += 1  # the version drains (a hot swap waits) until this request ends
        try:
            return await self._predict_records(served, body, trace, deadline)
        except Exception as exc:
            self.fail(trace, exc)
            raise
        finally:
            served.inflight -= 1

    async def _predict_records(
        self, served: ServedModel, body: bytes, trace: RequestTrace, deadline: Deadline | None
    ) -> Reply:
        trace.protocol = "records"
        predictor, batcher = served.require_ready()
        validator: Validator = predictor.validator

        limits = self.limits

        def decode() -> Columns:
            instances, _parameters = records.decode_predict_request(body)
            check_json_depth(body, limits.max_json_depth)
            check_rows(len(instances), limits.max_instances, "instances")
            columns = validator.records(instances)
            if len(body) > limits.max_string_length:  # else no string can be that long
                check_strings(columns, limits.max_string_length)
            return columns

        started = time.perf_counter()
        columns = await _decode(decode, len(body), predictor.schema, trace)
        output, fallback = await self.answer(served, batcher, columns, trace, deadline)
        self.report(served, columns, output, trace, started)
        payload = records.encode_predict_response(
            Predictions(output, predictor.schema.outputs),
            name=served.name,
            version=served.version,
            request_id=trace.request_id,
            variant=trace.variant,
        )
        headers = {VERSION_HEADER: served.version}
        if fallback:
            headers[FALLBACK_HEADER] = fallback
        if trace.variant:
            headers[VARIANT_HEADER] = trace.variant
        return Reply(payload, headers)

    def route(
        self,
        name: str,
        version: str | None,
        trace: RequestTrace,
        headers: Mapping[str, str] | None = None,
        document: bytes = b"",
    ) -> ServedModel:
        """The served model version that answers this request, noted in ``trace``.

        Without a rollout for ``name``: the version asked for (the name's default version when
        ``version`` is None). Under a rollout the split chooses among the name's versions
        (canary weight or sticky A/B by the spec's key: the request id, a header, or a field of
        the first record of the JSON ``document``), before anything is decoded, since the
        request is validated against the chosen version's schema; a version asked for
        explicitly bypasses the split (variant ``pinned``). Every later step uses only the
        ``ServedModel`` returned, and the trace carries the choice (``variant``) to the body,
        headers, access log, metrics and decision log.
        """
        if name in self.rollouts.live:
            if version is not None:
                trace.variant = PINNED
            else:
                chosen = self.rollouts.choose(name, trace.request_id, headers, document)
                if chosen is not None:
                    try:
                        served = self.manager.get(name, chosen.version)
                    except NotFoundError:  # unloaded under the split's feet: the default answers
                        served = self._served(name, None)
                        trace.variant = "production"
                    else:
                        trace.variant = chosen.variant
                    trace.model, trace.version = served.name, served.version
                    return served
        served = self._served(name, version)
        trace.model, trace.version = served.name, served.version
        return served

    def fail(self, trace: RequestTrace, exc: Exception) -> None:
        """A routed request failed: count it against its variant unless the client was at
        fault (a 4xx is the request's doing, not the version's)."""
        if trace.variant and not isinstance(exc, (InputError, AccessError)):
            latency = time.perf_counter() - trace.started
            self.rollouts.record(trace.model, trace.variant, latency, True, None)

    async def answer(
        self,
        served: ServedModel,
        batcher: AdaptiveBatcher,
        columns: Columns,
        trace: RequestTrace,
        deadline: Deadline | None = None,
    ) -> tuple[ModelOutput, str | None]:
        """Cache -> guard -> batcher -> runtime: the (hardened) outputs for ``columns``, and the
        fallback mode if a fallback answered. Rows, batch facts and fallback go into ``trace``;
        the trace goes on to the batcher, which calls its ``on_wait`` if the request waits long.
        """
        rows = len(next(iter(columns.values())))
        guard = served.guard
        fallback: str | None = None
        info: BatchInfo | None
        cache = served.cache
        key = cache.key(columns) if cache is not None else None
        cached = cache.get(key) if cache is not None and key is not None else None
        if cached is not None:  # the same validated input was answered moments ago
            output, info = cached, None
        elif guard is None:  # a model registered without guards (built outside the manager)
            output, info = await batcher.submit(columns, rows, deadline, None, trace)
        else:
            outcome = await guard.call(
                lambda timeout: batcher.submit(columns, rows, deadline, timeout, trace),
                columns,
                rows,
                deadline if deadline is not None else self.deadlines.default(),
                batcher.queue_state,
            )
            output, info, fallback = outcome.output, outcome.info, outcome.fallback
            if info is not None:
                guard.admission.observe(info.predict_seconds)
        if cache is not None and key is not None and cached is None and fallback is None:
            cache.put(key, output)  # only the model's own answers, never a fallback's
        trace.rows = rows
        trace.batch = info if info is not None else BatchInfo(0.0, 0.0, rows, 1)
        trace.fallback = fallback is not None
        trace.predicted = time.perf_counter()
        return output, fallback

    def report(
        self,
        served: ServedModel,
        columns: Columns,
        output: ModelOutput,
        trace: RequestTrace,
        started: float,
    ) -> None:
        """Trace -> observers: one ``PredictionEvent`` for metrics, drift and the decision log
        (nothing for a request not yet answered). ``started`` is when decoding began."""
        if trace.variant and trace.batch is not None:
            self._rollout_report(served, columns, output, trace, started)
        self._publish(served, columns, output, [(trace, started)])

    def report_group(
        self,
        served: ServedModel,
        columns: Columns,
        output: ModelOutput,
        answered: Sequence[tuple[RequestTrace, float]],
    ) -> None:
        """``report`` for requests answered together (the records lane's group), each
        ``(trace, when its decoding began)``, in row order: one event for all of them, with each
        request's part, so that the observers' work per request shrinks with the group. Under a
        rollout every request is reported on its own (its variant's window counts requests)."""
        if len(answered) == 1:
            self.report(served, columns, output, *answered[0])
        # any, not the first: a rollout applied mid-admission gives only later requests a variant
        elif any(trace.variant for trace, _ in answered):
            spans = row_spans([trace.rows for trace, _ in answered])
            for (trace, began), (start, stop) in zip(answered, spans, strict=True):
                own = {name: values[start:stop] for name, values in columns.items()}
                self.report(served, own, output.rows(start, stop), trace, began)
        else:
            self._publish(served, columns, output, answered)

    def _publish(
        self,
        served: ServedModel,
        columns: Columns,
        output: ModelOutput,
        answered: Sequence[tuple[RequestTrace, float]],
    ) -> None:
        """One ``PredictionEvent`` for the observers: of one request, or of several answered
        together (each one's part listed); nothing for a request not yet answered."""
        first = answered[0][0]
        if first.batch is None or not self.observers:
            return
        wall, now = time.time(), time.perf_counter()
        parts = tuple(
            RequestPart(  # each request's time is when its decoding began
                t.request_id, t.rows, t.predicted - began, t.traceparent, wall - (now - began)
            )
            for t, began in answered
        )
        event = PredictionEvent(
            request_id=first.request_id,
            time=parts[0].time,
            model=served.name,
            version=served.version,
            digest=served.digest,
            protocol=first.protocol,
            columns=columns,
            output=output,
            rows=sum(part.rows for part in parts),
            latency_seconds=parts[0].latency_seconds,
            traceparent=first.traceparent,
            batch=first.batch,
            fallback=first.fallback,
            variant=first.variant,
            parts=parts if len(parts) > 1 else (),
        )
        for observer in self.observers:
            observer.observe(event)

    def _rollout_report(
        self,
        served: ServedModel,
        columns: Columns,
        output: ModelOutput,
        trace: RequestTrace,
        started: float,
    ) -> None:
        """Count the answer in its variant's window (a fallback's answer as a failure of the
        version) and hand a copy of production's answers to the name's shadows, off the reply's
        path (a shadow is compared with production, never with a canary)."""
        rollouts = self.rollouts
        rollouts.record(
            served.name, trace.variant, trace.predicted - trace.started, trace.fallback, output
        )
        if not trace.fallback and rollouts.shadowed(served.name, served.version):
            copy = ShadowCopy(
                trace.request_id,
                time.time() - (time.perf_counter() - started),
                trace.protocol,
                columns,
                output,
                trace.traceparent,
            )
            rollouts.shadow(served.name, copy)


def observed_decode(work: Callable[[], T], schema: Schema, trace: RequestTrace) -> T:
    """Decode + validate, noting in ``trace`` how long it took and what was refused."""
    started = time.perf_counter()
    try:
        return work()
    except InputError as exc:
        if isinstance(exc, ValidationError):
            fields = schema.field_names
            trace.violations = tuple(
                (v.field if v.field in fields else "_unknown", v.rule) for v in exc.violations
            )
        withheld = withhold_pii(exc, schema.pii_fields)  # decoders may quote a PII value
        if withheld is not None:
            raise withheld from exc
        raise
    finally:
        trace.validate_started, trace.validated = started, time.perf_counter()


async def _decode(work: Callable[[], T], size: int, schema: Schema, trace: RequestTrace) -> T:
    """``observed_decode`` on the event loop for a small body; in a thread for a large one,
    so that the loop keeps serving other requests meanwhile (the request counts as waiting)."""
    if size <= OFFLOAD_BYTES:
        return observed_decode(work, schema, trace)
    trace.waiting()
    return await asyncio.to_thread(observed_decode, work, schema, trace)


def row_spans(counts: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each request's rows among requests answered together, in order."""
    spans, start = [], 0
    for count in counts:
        spans.append((start, start + count))
        start += count
    return spans


def _schema_of(served: ServedModel) -> Schema:
    if served.manifest is None:
        served.require_ready()  # raises NotReadyError with the reason
        raise AssertionError("unreachable: a model without a manifest is never ready")
    return served.manifest.model_schema
