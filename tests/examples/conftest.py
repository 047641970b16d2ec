"""The examples run against the same small fraud bundle as the integration tests."""

from tests.integration.conftest import cards, fraud_bundle

__all__ = ["cards", "fraud_bundle"]
