import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rtserve.errors import AuthenticationError, PermissionDeniedError
from rtserve.guard.auth import ANONYMOUS, ApiKeys, Authenticator, JwtVerifier, hash_key
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
        PermissionDeniedError, match="needs the 'predict' role; 'reader' holds: read"
    ):
        Authenticator.authorize(reader, "predict", "POST /v1/models/x:predict")
    Authenticator.authorize(auth.authenticate({"x-api-key": "a"}), "predict", "anything")


def test_settings_refuse_bearer_tokens_without_issuer_and_audience():
    with pytest.raises(ValueError, match="jwt_issuer and jwt_audience"):
        AuthSettings(jwt_secret=SECRET)
