"""Who is calling and what they may do: API keys (stored as hashes) and JWT bearer tokens -> roles.

Roles: ``predict`` (inference), ``read`` (metadata, schemas, drift), ``admin`` (anything that changes
the server; it also holds every other role). Routes marked ``public`` (health probes) need nothing.
An API key is never stored: the configuration holds its sha256, and a presented key is hashed and
compared with every stored hash in constant time, so neither the key nor a timing difference leaks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtserve.errors import AuthenticationError, PermissionDeniedError
from rtserve.settings import AuthSettings

Role = Literal["predict", "read", "admin"]
ROLES: tuple[Role, ...] = ("predict", "read", "admin")
#: The scheme a client names in ``WWW-Authenticate`` / ``Authorization``.
BEARER = "Bearer"
API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable subject (key name or token ``sub``) and its roles."""

    subject: str
    roles: frozenset[str]
    method: Literal["api_key", "jwt", "anonymous"]

    def may(self, role: str) -> bool:
        """Whether this caller holds ``role`` (``admin`` holds them all)."""
        return role in self.roles or "admin" in self.roles


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
            raise _unauthenticated("the bearer token has expired; get a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise _unauthenticated(
                f"the bearer token is not for this audience (expected {self.audience!r})"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise _unauthenticated(f"the bearer token was not issued by {self.issuer!r}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthenticated(f"the bearer token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise _unauthenticated(
                f"the bearer token is not valid ({type(exc).__name__}); tokens must be "
                f"{self.algorithm}-signed by the configured key"
            ) from exc
        return Principal(str(claims["sub"]), _roles_of(claims.get(self.roles_claim)), "jwt")


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
                    f"the Authorization scheme {scheme!r} is not supported; send "
                    f"'Authorization: Bearer <token or key>' or '{API_KEY_HEADER}: <key>'"
                )
        if api_key is None:
            raise _unauthenticated(
                f"this route needs credentials; send 'Authorization: Bearer <token or key>' or "
                f"'{API_KEY_HEADER}: <key>'"
            )
        principal = self.keys.find(api_key.strip())
        if principal is None:
            raise _unauthenticated("the API key is not valid")
        return principal

    @staticmethod
    def authorize(principal: Principal, role: str, what: str) -> None:
        """Raise ``PermissionDeniedError`` unless ``principal`` holds ``role`` (for ``what``)."""
        if not principal.may(role):
            held = ", ".join(sorted(principal.roles)) or "none"
            raise PermissionDeniedError(
                f"{what} needs the {role!r} role; {principal.subject!r} holds: {held}",
                field="role",
            )


def _unauthenticated(message: str) -> AuthenticationError:
    return AuthenticationError(message, field="authorization")


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
