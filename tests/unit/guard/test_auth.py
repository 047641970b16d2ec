import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rtserve.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from rtserve.guard.auth import (
    ANONYMOUS,
    FAILURE_REASONS,
    ApiKeys,
    Authenticator,
    JwtVerifier,
    Principal,
    client_identity,
    hash_key,
    not_found_unlisted,
)
from rtserve.settings import AuthSettings

SECRET = "s3cret-for-tests-only-" + "0123456789abcdef" * 3  # 70 bytes: long enough for HS512


def token(claims=None, key=SECRET, algorithm="HS256", **overrides):
    body = {
        "sub": "svc-a",
        "iss": "issuer",
        "aud": "rtserve",
        "exp": time.time() + 60,
        "roles": ["predict"],
    }
    body.update(claims or {})
    body.update(overrides)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


@pytest.fixture
def hs256():
    return JwtVerifier(SECRET.encode(), "HS256", "issuer", "rtserve")


def test_api_keys_are_found_by_hash_only():
    keys = ApiKeys(
        [(hash_key("key-1"), "alice", ["predict"]), (hash_key("key-2"), "bob", ["read"])]
    )
    assert keys.find("key-2").subject == "bob"
    assert keys.find("key-2").roles == {"read"}
    assert keys.find("key-3") is None
    assert "key-1" not in repr(keys.__dict__)


def test_a_valid_hs256_token_gives_its_subject_and_roles(hs256):
    principal = hs256.verify(token())
    assert (principal.subject, principal.roles, principal.method) == ("svc-a", {"predict"}, "jwt")


def test_roles_may_be_a_space_separated_scope_string():
    verifier = JwtVerifier(SECRET.encode(), "HS256", "issuer", "rtserve", roles_claim="scope")
    assert verifier.verify(token({"scope": "read admin"})).roles == {"read", "admin"}


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"exp": time.time() - 10}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "mallory"}, "issued by"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
    ],
)
def test_tokens_with_a_bad_claim_are_refused_saying_which(hs256, claims, fragment):
    with pytest.raises(AuthenticationError, match=fragment):
        hs256.verify(token(claims))


def test_a_token_signed_with_another_key_or_algorithm_is_refused(hs256):
    with pytest.raises(AuthenticationError, match="not valid"):
        hs256.verify(token(key="another-secret-of-enough-length-123"))
    with pytest.raises(AuthenticationError, match="not valid"):
        hs256.verify(token(algorithm="HS512"))


def test_rs256_tokens_are_checked_against_the_public_key(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    auth = Authenticator.from_settings(
        AuthSettings(
            enabled=True,
            jwt_public_key_file=tmp_path / "pub.pem",
            jwt_issuer="issuer",
            jwt_audience="rtserve",
        )
    )
    good = token(key=private, algorithm="RS256")
    assert auth.authenticate({"authorization": f"Bearer {good}"}).subject == "svc-a"
    forged = token(key=SECRET, algorithm="HS256")  # the classic alg-confusion attempt
    with pytest.raises(AuthenticationError):
        auth.authenticate({"authorization": f"Bearer {forged}"})


def test_authentication_off_makes_every_caller_anonymous_with_every_role():
    principal = Authenticator(enabled=False).authenticate({})
    assert principal is ANONYMOUS
    assert all(principal.may(role) for role in ("predict", "read", "admin"))


def test_missing_or_unknown_credentials_are_unauthenticated():
    auth = Authenticator(True, ApiKeys([(hash_key("k"), "alice", ["read"])]))
    with pytest.raises(AuthenticationError, match="needs credentials"):
        auth.authenticate({})
    with pytest.raises(AuthenticationError, match="not valid"):
        auth.authenticate({"x-api-key": "wrong"})
    with pytest.raises(AuthenticationError, match="scheme 'Basic'"):
        auth.authenticate({"authorization": "Basic YTpi"})
    assert auth.authenticate({"authorization": "Bearer k"}).subject == "alice"
    assert auth.authenticate({"x-api-key": "k"}).subject == "alice"


def test_a_role_is_needed_and_admin_holds_every_role():
    auth = Authenticator(
        True, ApiKeys([(hash_key("r"), "reader", ["read"]), (hash_key("a"), "root", ["admin"])])
    )
    reader = auth.authenticate({"x-api-key": "r"})
    with pytest.raises(
        PermissionDeniedError, match="needs the 'predict' role; 'key:reader' holds: read"
    ):
        Authenticator.authorize(reader, "predict", "POST /v1/models/x:predict")
    Authenticator.authorize(auth.authenticate({"x-api-key": "a"}), "predict", "anything")


def test_settings_refuse_bearer_tokens_without_issuer_and_audience():
    with pytest.raises(ValueError, match="jwt_issuer and jwt_audience"):
        AuthSettings(jwt_secret=SECRET)


@pytest.mark.parametrize("subject", ["", "   "])
def test_a_token_with_an_empty_subject_is_refused(hs256, subject):
    with pytest.raises(AuthenticationError, match="'sub' claim is empty") as info:
        hs256.verify(token(sub=subject))
    assert info.value.reason == "claims"


def test_a_token_and_an_api_key_of_the_same_name_are_different_identities(hs256):
    keys = ApiKeys([(hash_key("k"), "svc-a", ["predict"])])
    by_key = keys.find("k")
    by_token = hs256.verify(token(sub="svc-a"))
    assert by_key.subject == by_token.subject == "svc-a"
    assert (by_key.identity, by_token.identity) == ("key:svc-a", "jwt:svc-a")
    assert client_identity(by_token, "10.0.0.9") == "jwt:svc-a"
    assert client_identity(ANONYMOUS, "10.0.0.9") == "ip:10.0.0.9"
    assert client_identity(ANONYMOUS, None) == "ip:unknown"
    # a subject that spells another kind's identity stays in its own namespace
    assert Principal("key:svc-a", frozenset(), "jwt").identity == "jwt:key:svc-a"


def test_refusals_never_name_the_expected_issuer_or_audience():
    issuer, audience = "https://idp.example/realm-7f3a", "payments-scoring-9c1d"
    verifier = JwtVerifier(SECRET.encode(), "HS256", issuer, audience)
    good = {"iss": issuer, "aud": audience}
    bad_tokens = [
        token(good, aud="other"),
        token(good, iss="mallory"),
        token(good, exp=time.time() - 10),
        token(good, sub=None),
        token(good, sub=""),
        token(good, key="another-secret-of-enough-length-123"),
    ]
    for bad in bad_tokens:
        with pytest.raises(AuthenticationError) as info:
            verifier.verify(bad)
        assert issuer not in info.value.message
        assert audience not in info.value.message
        assert "idp.example" not in info.value.message


def test_every_refusal_names_its_reason_from_the_fixed_set(hs256):
    auth = Authenticator(True, ApiKeys([(hash_key("k"), "alice", ["read"])]), hs256)
    attempts = {
        "missing": {},
        "scheme": {"authorization": "Basic YTpi"},
        "invalid_key": {"x-api-key": "wrong"},
        "invalid_token": {"authorization": "Bearer a.b.c"},
        "expired": {"authorization": f"Bearer {token(exp=time.time() - 10)}"},
        "claims": {"authorization": f"Bearer {token(aud='other')}"},
    }
    for reason, headers in attempts.items():
        with pytest.raises(AuthenticationError) as info:
            auth.authenticate(headers)
        assert info.value.reason == reason
        assert reason in FAILURE_REASONS


def test_the_unlisted_404_names_only_what_was_asked_for():
    listed = NotFoundError(
        "model 'nope' is not served here; served models: ['fraud', 'secret-model']",
        field="model_name",
    )
    unlisted = not_found_unlisted(listed, "nope", None)
    assert "secret-model" not in unlisted.message
    assert "'nope'" in unlisted.message
    assert unlisted.field == "model_name"
    version = NotFoundError("model 'fraud' has no version '9'; served versions: ['1', '2']",
                            field="model_version")  # fmt: skip
    assert "'2'" not in not_found_unlisted(version, "fraud", "9").message
