"""The one exception tree of rtserve.

Every failure the product can report is one of these types. Each carries a stable machine-readable
``code`` and, where it concerns one input field, the ``field``. Exactly one module
(``rtserve.server.error_handlers``) maps them to HTTP status codes; nothing here knows about HTTP.

::

    RtserveError
    ├── BundleError                     a bundle cannot be built, read or trusted
    │   ├── BundleFormatError           manifest missing, unparseable or of an unknown format
    │   ├── IntegrityError              a file's or the manifest's hash does not match
    │   ├── UnsafeArtifactError         a pickle artifact without trust and a pinned digest
    │   │   └── UntrustedCodeError      a model or manifest names code outside the allow-list
    │   ├── UnsafeArchiveError          a tar entry that would leave the bundle
    │   ├── UnsafePathError             a manifest path or file that points outside the bundle
    │   ├── BundleTooLargeError         a bundle part or archive beyond a size or count limit
    │   ├── SignatureError              a signature is missing, unknown, invalid or not for this bundle
    │   ├── EnvironmentMismatchError    framework versions differ and strict mode refuses
    │   ├── SchemaDefinitionError       a schema (inferred or hand-edited) is inconsistent
    │   └── UnsupportedModelError       no runtime can package this model
    ├── InputError                      a request is wrong; the client can fix it
    │   ├── MalformedRequestError       body is not parseable / not of the protocol's shape
    │   ├── ValidationError             one or more fields break the schema (holds all of them)
    │   ├── UnsupportedMediaTypeError   body is not of a content type we read
    │   ├── PayloadTooLargeError        body or batch exceeds a configured limit
    │   ├── HeaderTooLargeError         the request line and headers exceed their size limit
    │   └── RequestTimeoutError         the headers or body arrived too slowly (slow sender)
    ├── AccessError                     the caller may not do this (guard.auth)
    │   ├── AuthenticationError         no credentials, or invalid ones
    │   └── PermissionDeniedError       valid credentials without the route's role
    ├── RateLimitedError                a client used up its rate limit; retry after a while
    ├── NotFoundError                   unknown model or version
    ├── UnavailableError                cannot take this request now; retry after a while
    │   ├── NotReadyError               model known but not (yet) able to answer
    │   ├── OverloadedError             shed by admission control (queue full, wait too long)
    │   └── ModelUnavailableError       the model failed and its fallback is fail_closed
    ├── DeadlineExceededError           the request's deadline passed before its answer
    ├── PredictionError                 the runtime failed on valid input
    ├── LoadTestError                   a load test cannot run (rtserve bench: target, bodies)
    ├── DeployError                     deployment files cannot be made, or replicas cannot start (rtserve k8s, replicas)
    ├── StreamError                     stream scoring cannot run: broker URL, subject or option (rtserve stream)
    ├── BatchError                      a batch job cannot run: inputs, output directory, engine (rtserve batch)
    ├── ComparisonError                 two bundles cannot be compared on these rows (rtserve compare)
    ├── RolloutError                    a traffic policy (canary, A/B, shadow) cannot be applied
    │   ├── RolloutSpecError            a rollout spec breaks a rule (weights, versions, gate)
    │   └── RolloutConflictError        the change contradicts the rollout's state (already ended)
    └── RegistryError                   the model registry refuses or cannot do an action
        ├── RegistryInputError          an argument breaks a registry rule (stage, alias, comment)
        ├── RegistryNotFoundError       unknown model, version, stage, alias or request
        ├── RegistryConflictError       the action contradicts the registry's state (other digest)
        ├── RegistryPermissionError     the actor lacks the role, or approves their own request
        ├── RegistryStorageError        the database or artifact store cannot be used
        └── AuditChainError             the audit log's hash chain is broken (edited, deleted row)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RtserveError(Exception):
    """Base of every error rtserve raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error", "code", "field"}``; ``field`` is null when no one
        field is at fault, so clients can always read all three keys."""
        return {"error": self.message, "code": self.code, "field": self.field}


# --- bundle ---------------------------------------------------------------------------------


class BundleError(RtserveError):
    """A bundle cannot be built, read or trusted."""

    code = "bundle_error"


class BundleFormatError(BundleError):
    """The manifest is missing, unparseable, or of a format this version cannot read."""

    code = "bundle_format"


class IntegrityError(BundleError):
    """A file's bytes (or the manifest's content) do not match the recorded sha256."""

    code = "integrity"

    def __init__(self, path: str, expected: str, actual: str, hint: str = "") -> None:
        message = (
            f"{path}: sha256 {actual[:16]}… does not match the recorded {expected[:16]}…; "
            "the bundle was modified or corrupted after it was built"
        )
        if hint:
            message += f" ({hint})"
        super().__init__(message, field=path)
        self.path = path


class UnsafeArtifactError(BundleError):
    """A pickle artifact was about to be loaded without explicit trust and a pinned digest."""

    code = "unsafe_artifact"


class UntrustedCodeError(UnsafeArtifactError):
    """A model file or a runtime option names a class or function outside rtserve's allow-list.

    Loading would import that code and the model could call it, and hashes do not prevent it (an
    editor of a bundle can recompute them); ``names`` lists every offending dotted name.
    """

    code = "untrusted_code"

    def __init__(self, message: str, *, names: list[str], field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.names = names


class UnsafeArchiveError(BundleError):
    """A bundle archive holds an entry that would escape the bundle directory."""

    code = "unsafe_archive"


class UnsafePathError(BundleError):
    """A path in the manifest (or a file of the bundle) would lead outside the bundle directory.

    Absolute paths, ``..``, NUL and control characters, and symbolic links are all refused before
    anything is read through them.
    """

    code = "unsafe_path"


class BundleTooLargeError(BundleError):
    """A bundle part (manifest, JSON file, archive) exceeds a size, count or nesting limit."""

    code = "bundle_too_large"


class SignatureError(BundleError):
    """A bundle's signature is required but missing, or present but not trusted for this bundle.

    ``reason`` names the failure from a small fixed set (``unsigned``, ``unknown_key``,
    ``bad_signature``, ``digest_mismatch``, ``malformed``, ``bad_key``, ``no_trusted_keys``) for a
    refused-load counter and the audit log; the message stays the operator's explanation.
    """

    code = "signature"

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class EnvironmentMismatchError(BundleError):
    """A framework's installed version differs from the build's and strict mode refuses it."""

    code = "environment_mismatch"


class SchemaDefinitionError(BundleError):
    """A schema, inferred or edited by hand, contradicts itself or the model."""

    code = "schema_definition"


class UnsupportedModelError(BundleError):
    """No runtime adapter can package this object."""

    code = "unsupported_model"


# --- requests -------------------------------------------------------------------------------


class InputError(RtserveError):
    """The request is wrong and the client can fix it."""

    code = "bad_request"


class MalformedRequestError(InputError):
    """The body cannot be parsed or does not have the protocol's shape."""

    code = "malformed_request"


class UnsupportedMediaTypeError(InputError):
    """The body is of a content type the endpoint does not read."""

    code = "unsupported_media_type"


class PayloadTooLargeError(InputError):
    """The body or the number of rows exceeds a configured limit."""

    code = "payload_too_large"


class HeaderTooLargeError(InputError):
    """The request line and headers exceed the configured size (HTTP 431), refused before the
    application sees the request."""

    code = "header_too_large"


class RequestTimeoutError(InputError):
    """The request's headers or body did not arrive within the configured timeout (a slow
    sender)."""

    code = "request_timeout"


# --- access and rate ------------------------------------------------------------------------


class AccessError(RtserveError):
    """The caller may not do this; the subclass says whether it is who they are or what they may."""

    code = "access_denied"


class AuthenticationError(AccessError):
    """No credentials were sent, or the ones sent are not valid (unknown key, bad token).

    ``reason`` names the failure from a small fixed set (``missing``, ``invalid_key`` ...) for
    the failure counter; the message stays the client's explanation.
    """

    code = "unauthenticated"

    def __init__(self, message: str, *, field: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message, field=field)
        self.reason = reason


class PermissionDeniedError(AccessError):
    """The credentials are valid but lack the role the route needs."""

    code = "forbidden"


class RateLimitedError(RtserveError):
    """A client used up its rate limit; ``retry_after`` seconds until it may try again.

    ``limit``, ``remaining`` and ``reset_after`` describe the window (for ``RateLimit-*``).
    """

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float, limit: int, remaining: int, reset_after: float
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule on one field of one row."""

    field: str
    rule: str
    message: str
    row: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form used in error bodies."""
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "error": self.message}
        if self.row is not None:
            out["row"] = self.row
        return out


#: How many violations a ``ValidationError``'s message spells out (all of them are in the list).
MESSAGE_VIOLATIONS = 20


class ValidationError(InputError):
    """One or more input fields break the schema; holds every violation, not only the first."""

    code = "validation_failed"

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("ValidationError needs at least one violation")
        self.violations = violations
        fields = sorted({v.field for v in violations})
        shown = [
            f"{v.message} (row {v.row})" if v.row is not None else v.message
            for v in violations[:MESSAGE_VIOLATIONS]
        ]
        hidden = len(violations) - len(shown)
        more = f"; and {hidden} more (every one is in .violations)" if hidden else ""
        if len(violations) == 1:
            message = shown[0]
        else:
            message = f"{len(violations)} violations: " + "; ".join(shown) + more
        super().__init__(message, field=violations[0].field)
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        """The error body plus every offending field and (the first 100) violations."""
        body = super().to_dict()
        body["fields"] = self.fields
        body["violations"] = [v.to_dict() for v in self.violations[:100]]
        return body


class NotFoundError(RtserveError):
    """The named model or version is not served here."""

    code = "not_found"


class UnavailableError(RtserveError):
    """The server cannot take this request now; ``retry_after`` seconds is a fair wait."""

    code = "unavailable"
    retry_after: float = 1.0


class NotReadyError(UnavailableError):
    """The model is known but cannot answer yet (loading, warm-up failed, shutting down)."""

    code = "not_ready"


class OverloadedError(UnavailableError):
    """Admission control shed the request: its model's queue is full or the wait too long.

    ``reason`` is the counter the rejection is counted under (``queue_full``, ``expected_wait``).
    """

    code = "overloaded"

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message, field="model")
        self.reason = reason
        self.retry_after = retry_after


class ModelUnavailableError(UnavailableError):
    """The model failed (or its circuit is open) and its fallback policy is ``fail_closed``."""

    code = "model_unavailable"


class DeadlineExceededError(RtserveError):
    """The request's deadline passed before its answer was ready; the model did not run for it."""

    code = "deadline_exceeded"


class PredictionError(RtserveError):
    """The runtime failed on input that passed validation."""

    code = "prediction_failed"


class LoadTestError(RtserveError):
    """A load test cannot run: the target does not start or answer, or no bodies can be made."""

    code = "load_test"


class DeployError(RtserveError):
    """Deployment files cannot be generated: a bundle or reference, a name or a timing is unusable
    (``rtserve k8s``), or replicas cannot start (``rtserve replicas``: nginx missing or refusing
    its file, a replica that exits before it is ready); the message names the value, the rule and
    the option that fixes it."""

    code = "deploy"


class StreamError(RtserveError):
    """Stream scoring cannot run: an unsupported or unreachable broker, an unusable subject or
    option (``rtserve stream``); the message names the value, the rule and the fix."""

    code = "stream"


class BatchError(RtserveError):
    """A batch job cannot run: its inputs match nothing, its output would overwrite them, or its
    engine or scheduler is missing or unreachable (``rtserve batch``); the message says which
    option to change."""

    code = "batch"


class ComparisonError(RtserveError):
    """Two bundles cannot be compared: their outputs differ in kind, the data lacks a named
    column, the decision log holds no inputs, or no row is valid for both (``rtserve compare``);
    the message names the value, the rule and the option or setting that fixes it."""

    code = "comparison"


# --- rollout --------------------------------------------------------------------------------


class RolloutError(RtserveError):
    """A traffic policy (canary, A/B split, shadows, promotion gate) cannot be applied."""

    code = "rollout_error"


class RolloutSpecError(RolloutError):
    """A rollout spec breaks a rule: weights that do not add up, a version named twice, a
    gate threshold out of range, an unknown key."""

    code = "rollout_invalid"


class RolloutConflictError(RolloutError):
    """The change contradicts the rollout's state: resuming one that ended, starting one while
    another runs, a version that is not served, a state changed by someone else meanwhile."""

    code = "rollout_conflict"


# --- registry -------------------------------------------------------------------------------


class RegistryError(RtserveError):
    """The model registry refuses an action or cannot carry it out."""

    code = "registry_error"


class RegistryInputError(RegistryError):
    """An argument breaks a registry rule: an unknown stage, an alias that is a stage name, an
    approval without a comment, labels that do not match the validation sample."""

    code = "registry_invalid"


class RegistryNotFoundError(RegistryError):
    """The named model, version, stage, alias or promotion request is not in the registry."""

    code = "registry_not_found"


class RegistryConflictError(RegistryError):
    """The action contradicts the registry's state: another bundle under an existing
    name@version, a request already closed, archiving the version production serves."""

    code = "registry_conflict"


class RegistryPermissionError(RegistryError):
    """The actor lacks the registry role the action needs, or the policy forbids them (a
    requester approving their own promotion, an approver not named by the model's policy)."""

    code = "registry_forbidden"


class RegistryStorageError(RegistryError):
    """The registry's database or artifact store cannot be opened, migrated, read or written."""

    code = "registry_storage"


class AuditChainError(RegistryError):
    """The audit log's hash chain does not verify: a row was edited, deleted or reordered.

    ``seq`` is the first sequence number at which the chain breaks.
    """

    code = "audit_chain_broken"

    def __init__(self, message: str, *, seq: int | None) -> None:
        super().__init__(message, field="audit")
        self.seq = seq
