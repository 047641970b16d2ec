"""Who is calling and what they may do: API keys (stored as hashes) and JWT bearer tokens -> roles.

Roles: ``predict`` (inference), ``read`` (metadata, schemas, drift), ``admin`` (anything that changes
the server; it also holds every other role). Routes marked ``public`` (health probes) need nothing.
An API key is never stored: the configuration holds its sha256, and a presented key is hashed and
compared with every stored hash in constant time, so neither the key nor a timing difference leaks.

Identities are namespaced by kind (``key:<name>``, ``jwt:<sub>``, ``ip:<address>``): a token whose
``sub`` equals an API key's name is a different caller, with its own rate-limit bucket. A refusal
tells the client what to fix, never what the server expects (no issuer, audience or model list).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtserve.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from rtserve.settings import AuthSettings

Role = Literal["predict", "read", "admin"]
ROLES: tuple[Role, ...] = ("predict", "read", "admin")
#: The scheme a client names in ``WWW-Authenticate`` / ``Authorization``.
BEARER = "Bearer"
API_KEY_HEADER = "x-api-key"
#: Why an authentication failed: the ``reason`` label of ``rtserve_auth_failures_total`` (a
#: fixed set, so the label stays bounded). ``blocked``: refused unchecked, too many failures.
FAILURE_REASONS = (
    "missing", "scheme", "invalid_key", "invalid_token", "expired", "claims", "blocked",
)  # fmt: skip
#: The identity prefix of each authentication method.
_KIND = {"api_key": "key", "jwt": "jwt"}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable subject (key name or token ``sub``) and its roles."""

    subject: str
    roles: frozenset[str]
    method: Literal["api_key", "jwt", "anonymous"]

    def may(self, role: str) -> bool:
        """Whether this caller holds ``role`` (``admin`` holds them all)."""
        return role in self.roles or "admin" in self.roles

    @property
    def identity(self) -> str:
        """``key:<name>`` or ``jwt:<sub>``: the caller in rate limits and messages. The kind is
        part of it, so a token cannot pass for the API key whose name its ``sub`` repeats."""
        if self.method == "anonymous":
            return "anonymous"
        return f"{_KIND[self.method]}:{self.subject}"


def address_identity(host: str | None) -> str:
    """``ip:<address>``: a caller known only by the address it connects from (the proxy's
    client address only when it comes from a configured trusted proxy, see ``trusted_proxies``)."""
    return f"ip:{host or 'unknown'}"


def client_identity(principal: Principal, host: str | None) -> str:
    """The rate-limit identity of a request: its principal's, or its address without one."""
    if principal.method == "anonymous":
        return address_identity(host)
    return principal.identity


ANONYMOUS = Principal("anonymous", frozenset(ROLES), "anonymous")


def hash_key(key: str) -> str:
    """The sha256 hex digest under which an API key is configured (``rtserve`` never stores keys)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _StoredKey:
    digest: bytes
    name: str
    roles: frozenset[str]


class ApiKeys:
    """The configured API keys, by hash only."""

    def __init__(self, entries: Iterable[tuple[str, str, Iterable[str]]]) -> None:
        """``entries``: (sha256 hex, client name, roles) per key."""
        self._keys = [
            _StoredKey(bytes.fromhex(digest), name, frozenset(roles))
            for digest, name, roles in entries
        ]

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, key: str) -> Principal | None:
        """The principal the key belongs to, or None; compares against every hash in constant time."""
        presented = hashlib.sha256(key.encode("utf-8")).digest()
        found: _StoredKey | None = None
        for stored in self._keys:  # no early exit: every key costs the same
            if hmac.compare_digest(presented, stored.digest):
                found = stored
        if found is None:
            return None
        return Principal(found.name, found.roles, "api_key")


@dataclass(frozen=True)
class JwtVerifier:
    """Checks bearer tokens: signature (HS256 or RS256), ``exp``, ``iss`` and ``aud``."""

    key: str | bytes
    algorithm: Literal["HS256", "RS256"]
    issuer: str
    audience: str
    roles_claim: str = "roles"
    leeway_s: float = 0.0

    def verify(self, token: str) -> Principal:
        """The token's subject and roles; ``AuthenticationError`` saying what is wrong otherwise."""
        import jwt

        # The messages never name the expected issuer or audience: a caller without a valid
        # token must not learn what one would have to claim.
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthenticated(
                "the bearer token has expired; get a new one", "expired"
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise _unauthenticated(
                "the bearer token is not for this audience; ask your identity provider for a "
                "token meant for this service",
                "claims",
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise _unauthenticated(
                "the bearer token was not issued by an issuer this server trusts; get one from "
                "your identity provider",
                "claims",
            ) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthenticated(
                f"the bearer token lacks the {exc.claim!r} claim", "claims"
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise _unauthenticated(
                f"the bearer token is not valid ({type(exc).__name__}); tokens must be "
                f"{self.algorithm}-signed by the configured key",
                "invalid_token",
            ) from exc
        subject = claims["sub"]  # PyJWT has checked that it is present and a string
        if not isinstance(subject, str) or not subject.strip():
            raise _unauthenticated(
                "the bearer token's 'sub' claim is empty; it must name the caller", "claims"
            )
        return Principal(subject, _roles_of(claims.get(self.roles_claim)), "jwt")


@dataclass
class Authenticator:
    """Turns a request's credential headers into a ``Principal``, and checks a route's role."""

    enabled: bool = False
    keys: ApiKeys = field(default_factory=lambda: ApiKeys(()))
    jwt: JwtVerifier | None = None

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        """Build from ``Settings.auth``; secrets come from the environment or files only."""
        keys = ApiKeys((k.sha256.lower(), k.name, k.roles) for k in settings.api_keys)
        verifier: JwtVerifier | None = None
        if settings.jwt_public_key_file is not None:
            pem = Path(settings.jwt_public_key_file).read_text(encoding="utf-8")
            verifier = JwtVerifier(
                pem, "RS256", settings.jwt_issuer, settings.jwt_audience,
                settings.jwt_roles_claim, settings.jwt_leeway_s,
            )  # fmt: skip
        else:
            secret = _secret_of(settings)
            if secret is not None:
                verifier = JwtVerifier(
                    secret, "HS256", settings.jwt_issuer, settings.jwt_audience,
                    settings.jwt_roles_claim, settings.jwt_leeway_s,
                )  # fmt: skip
        return cls(settings.enabled, keys, verifier)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller of a request with these (lower-case) headers.

        With authentication off every caller is ``ANONYMOUS`` and holds every role.
        """
        if not self.enabled:
            return ANONYMOUS
        api_key = headers.get(API_KEY_HEADER)
        authorization = headers.get("authorization")
        if api_key is None and authorization is not None:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() == BEARER.lower() and credential.strip():
                token = credential.strip()
                if self.jwt is not None and token.count(".") == 2:
                    return self.jwt.verify(token)
                api_key = token  # "Authorization: Bearer <api key>" works too
            else:
                raise _unauthenticated(
                    f"the Authorization scheme {scheme[:32]!r} is not supported; send "
                    f"'Authorization: Bearer <token or key>' or '{API_KEY_HEADER}: <key>'",
                    "scheme",
                )
        if api_key is None:
            raise _unauthenticated(
                f"this route needs credentials; send 'Authorization: Bearer <token or key>' or "
                f"'{API_KEY_HEADER}: <key>'",
                "missing",
            )
        principal = self.keys.find(api_key.strip())
        if principal is None:
            raise _unauthenticated("the API key is not valid", "invalid_key")
        return principal

    @staticmethod
    def authorize(principal: Principal, role: str, what: str) -> None:
        """Raise ``PermissionDeniedError`` unless ``principal`` holds ``role`` (for ``what``)."""
        if not principal.may(role):
            held = ", ".join(sorted(principal.roles)) or "none"
            raise PermissionDeniedError(
                f"{what} needs the {role!r} role; {principal.identity!r} holds: {held}",
                field="role",
            )


def _unauthenticated(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, field="authorization", reason=reason)


def not_found_unlisted(error: NotFoundError, name: str, version: str | None) -> NotFoundError:
    """The 404 for an unknown model or version naming only what the caller asked for.

    With authentication on, a caller learns nothing of models it did not name: the default 404
    lists every served model (helpful on a developer's laptop, a catalogue for anyone else).
    """
    if error.field == "model_version" and version is not None:
        message = f"model {name!r} has no version {version!r} here; check the version"
    else:
        message = f"model {name!r} is not served here; check the name"
    return NotFoundError(
        f"{message} (served models are not listed while authentication is on)", field=error.field
    )


def _roles_of(claim: Any) -> frozenset[str]:
    """Roles from a claim that is a list of names or a space-separated string (OAuth ``scope``)."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list):
        return frozenset(str(role) for role in claim)
    return frozenset()


def _secret_of(settings: AuthSettings) -> bytes | None:
    if settings.jwt_secret_file is not None:
        return Path(settings.jwt_secret_file).read_bytes().strip()
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode("utf-8")
    return None
