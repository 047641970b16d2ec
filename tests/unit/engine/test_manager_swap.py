"""Hot swap in the model manager: prepare beside, switch in one step, retire after draining."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rtserve.engine.manager import ModelManager
from rtserve.errors import NotReadyError, RtserveError, SignatureError
from rtserve.settings import Settings
from rtserve.types import ModelState
from tests.registry_support import build_broken_version, build_version


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap-unit")
    built = {v: build_version(root, v) for v in ("1", "2")}
    built["3"] = build_broken_version(root, "3")
    return built


@pytest.fixture
def manager(bundles: dict[str, Path]) -> ModelManager:
    manager = ModelManager(Settings())
    manager.load(bundles["1"])
    return manager


def test_a_prepared_version_does_not_answer_until_it_is_installed(
    manager: ModelManager, bundles: dict[str, Path]
) -> None:
    candidate = manager.prepare(bundles["2"])
    assert candidate.ready
    assert manager.get("dense").version == "1"
    assert manager.versions("dense") == ["1"]
    previous = manager.install(candidate)
    assert manager.get("dense") is candidate
    assert previous is not None
    assert previous.version == "1"
    assert manager.ready
    manager.close()


def test_a_version_failing_its_warm_up_is_reported_and_cannot_be_installed(
    manager: ModelManager, bundles: dict[str, Path]
) -> None:
    candidate = manager.prepare(bundles["3"])
    assert candidate.state is ModelState.FAILED
    assert candidate.warmup_failed
    assert "does NOT match" in candidate.reason
    with pytest.raises(NotReadyError):
        manager.install(candidate)
    assert manager.get("dense").version == "1"
    assert manager.ready  # the server stays ready: a refused candidate is never resident
    manager.close()


def test_retiring_waits_for_requests_in_flight_then_closes_the_old_version(
    manager: ModelManager, bundles: dict[str, Path]
) -> None:
    old = manager.get("dense")
    old.inflight = 1  # a request routed to v1 before the switch is still running
    previous = manager.install(manager.prepare(bundles["2"]))
    assert previous is old
    done = threading.Event()
    thread = threading.Thread(target=lambda: (manager.retire(old, timeout=10), done.set()))
    thread.start()
    time.sleep(0.3)
    assert not done.is_set()
    assert old.state is ModelState.READY
    assert manager.versions("dense") == ["2"]  # but no new request is routed to it
    old.inflight = 0
    thread.join(5)
    assert done.is_set()
    assert old.state is ModelState.UNLOADED
    manager.close()


def test_the_version_answering_unversioned_calls_cannot_be_retired(
    manager: ModelManager,
) -> None:
    with pytest.raises(RtserveError, match="answers the unversioned calls"):
        manager.retire(manager.get("dense"))
    manager.close()


def test_a_bad_trusted_key_file_refuses_the_manager_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    with pytest.raises(SignatureError):
        ModelManager(Settings(loading={"trusted_keys": [str(bad)]}))


def test_an_unsigned_bundle_fails_to_load_when_signatures_are_required(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    from rtserve.bundle.signature import generate_key_pair

    _private, public = generate_key_pair(tmp_path)
    settings = Settings(loading={"require_signature": True, "trusted_keys": [str(public)]})
    manager = ModelManager(settings)
    candidate = manager.prepare(bundles["1"])
    assert candidate.state is ModelState.FAILED
    assert "sign" in candidate.reason
    manager.close()


def test_requiring_signatures_without_a_trusted_key_is_a_settings_error() -> None:
    from rtserve.settings import SettingsError

    with pytest.raises(SettingsError, match="trusted_keys"):
        Settings.load(loading__require_signature=True)
