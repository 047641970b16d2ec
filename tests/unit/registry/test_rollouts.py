"""Rollouts in the registry: who starts and changes them, the gate's compare-and-set, the audit."""

from __future__ import annotations

import json
import threading
import time
from importlib import resources

import numpy as np
import pytest
import sqlalchemy as sa

from rtserve.errors import (
    RegistryConflictError,
    RegistryInputError,
    RegistryNotFoundError,
    RegistryPermissionError,
)
from rtserve.registry import ROLLOUT_ACTIONS, SERVER_EVENTS, Registry, schema
from rtserve.rollout.spec import RolloutState, parse_spec

CANARY = {"canary": {"version": "2", "weight": 5}, "steps": [5, 25, 50, 100], "dwell_s": 600}


@pytest.fixture
def registry_url(tmp_path):
    """SQLite only here; the compare-and-set race runs on PostgreSQL below."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def pushed(registry, fraud_versions):
    """fraud@1 in production, fraud@2 and fraud@3 pushed."""
    return _with_versions(registry, fraud_versions)


def _with_versions(reg, fraud_versions):
    for label in ("1", "2", "3"):
        reg.push(fraud_versions[label], "key:mae")
    request = reg.promote("fraud", "1", to="production", actor="key:mae")
    reg.approve(request.id, actor="key:ann", comment="baseline")
    return reg


def _spec(**changes):
    return parse_spec({"production": "1", **CANARY, **changes}, model="fraud")


def _step(record, **changes):
    """The state a gate would write next: the given fields, a fresh ``since``."""
    return record.state.model_copy(update={"since": time.time(), **changes})


def _rollout_audit(reg):
    return [e for e in reg.audit(subject="fraud") if e.action.startswith("rollout-")]


# --- start ---------------------------------------------------------------------------------


def test_a_maintainer_starts_a_canary_running_at_its_first_step_with_generation_1(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae", reason="retrained on May data")
    assert (started.state.status, started.state.weight, started.state.step) == ("running", 5, 0)
    assert started.generation == started.state.generation == 1
    assert (started.started_by, started.updated_by) == ("key:mae", "key:mae")
    assert pushed.rollout("fraud") == started
    [entry] = _rollout_audit(pushed)
    assert (entry.action, entry.actor, entry.reason) == ("rollout-start", "key:mae",
                                                         "retrained on May data")  # fmt: skip
    assert entry.before is None
    assert entry.after["spec"]["canary"] == {"version": "2", "weight": 5.0, "key": None}
    assert entry.after["state"]["generation"] == 1


def test_the_stored_spec_reads_back_equal_with_every_field(pushed):
    spec = parse_spec({
        "production": "1", "ab": {"key": "header:X-User-Id", "split": {"1": 60, "2": 40}},
        "shadows": ["3"], "segments": ["country"], "salt": "may",
        "gate": {"window_s": 120, "min_requests": 50, "max_psi": None},
    }, model="fraud")  # fmt: skip
    pushed.start_rollout(spec, actor="key:mae")
    stored = pushed.rollout("fraud")
    assert stored.spec == spec
    assert stored.spec.gate.max_psi is None
    assert stored.to_dict()["spec"]["ab"]["split"] == {"1": 60.0, "2": 40.0}
    with pushed.engine.connect() as conn:
        text = conn.execute(sa.select(schema.rollouts.c.spec)).scalar_one()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_to_dict_is_the_json_document_the_cli_prints(pushed):
    document = pushed.start_rollout(_spec(), actor="key:mae").to_dict()
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {"name", "spec", "state", "generation", "started_by", "started_at",
                             "updated_by", "updated_at"}  # fmt: skip
    assert document["state"]["status"] == "running"


def test_a_viewer_or_an_approver_cannot_start_a_rollout(pushed):
    for actor in ("key:vic", "key:ann"):
        with pytest.raises(RegistryPermissionError, match="maintainer"):
            pushed.start_rollout(_spec(), actor=actor)
    assert pushed.rollout("fraud") is None


def test_every_version_of_the_spec_must_be_in_the_registry(pushed):
    with pytest.raises(RegistryNotFoundError, match=r"fraud@9, which is not in the registry"):
        pushed.start_rollout(_spec(canary={"version": "9"}), actor="key:mae")
    with pytest.raises(RegistryNotFoundError, match="fraud@7"):
        pushed.start_rollout(_spec(shadows=["7"]), actor="key:mae")


def test_an_archived_version_cannot_take_part(pushed):
    pushed.archive("fraud", "3", actor="key:mae")
    with pytest.raises(RegistryConflictError, match=r"fraud@3 was archived") as caught:
        pushed.start_rollout(_spec(shadows=["3"]), actor="key:mae")
    assert caught.value.field == "version"


def test_production_must_be_the_version_the_production_stage_points_to(pushed):
    with pytest.raises(RegistryConflictError, match="fraud@production is '1'") as caught:
        pushed.start_rollout(_spec(production="3"), actor="key:mae")
    assert caught.value.field == "production"
    assert 'set production: "1" in the spec' in caught.value.message


def test_without_a_production_stage_any_production_version_is_accepted(registry, fraud_versions):
    for label in ("1", "2"):
        registry.push(fraud_versions[label], "key:mae")
    started = registry.start_rollout(_spec(), actor="key:mae")
    assert started.spec.production == "1"


def test_an_unknown_model_is_named(registry):
    with pytest.raises(RegistryNotFoundError, match="'fraud' is not in the registry"):
        registry.start_rollout(_spec(), actor="key:mae")
    with pytest.raises(RegistryNotFoundError):
        registry.rollout("fraud")


def test_a_second_start_is_refused_while_the_first_has_not_ended(pushed):
    pushed.start_rollout(_spec(), actor="key:mae")
    with pytest.raises(RegistryConflictError) as caught:
        pushed.start_rollout(_spec(canary={"version": "3"}), actor="key:max")
    assert "canary fraud@2 at 5%, running" in caught.value.message
    assert "rtserve rollout abort fraud" in caught.value.message
    assert pushed.rollout("fraud").spec.canary.version == "2"


def test_an_ended_rollout_is_replaced_and_the_generation_keeps_growing(pushed):
    pushed.start_rollout(_spec(), actor="key:mae")
    pushed.set_rollout_status("fraud", "abort", actor="key:mae", reason="wrong data")
    again = pushed.start_rollout(_spec(canary={"version": "3"}), actor="key:max")
    assert (again.spec.canary.version, again.state.status) == ("3", "running")
    assert again.generation == 3  # 1 started, 2 aborted: a gate that read 1 cannot write here
    start = _rollout_audit(pushed)[-1]
    assert start.action == "rollout-start"
    assert start.before["state"]["status"] == "aborted"
    assert start.before["spec"]["canary"]["version"] == "2"


# --- read ----------------------------------------------------------------------------------


def test_rollout_is_none_for_a_model_that_never_had_one(pushed):
    assert pushed.rollout("fraud") is None


def test_rollouts_reads_many_names_at_once(pushed):
    pushed.start_rollout(_spec(), actor="key:mae")
    found = pushed.rollouts(["fraud", "dense", "fraud"])
    assert list(found) == ["fraud", "dense"]
    assert found["fraud"].generation == 1
    assert found["dense"] is None
    assert pushed.rollouts([]) == {}


# --- the gate's decisions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("running", "rollout-step"),
        ("rolled_back", "rollout-rollback"),
        ("paused", "rollout-pause"),
        ("awaiting_approval", "rollout-await-approval"),
        ("promoted", "rollout-promoted"),
    ],
)
def test_a_gate_decision_is_written_over_the_generation_it_read_and_audited(pushed, status, action):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    weight = {"running": 25.0, "rolled_back": 0.0, "promoted": 100.0}.get(status, 5.0)
    figures = {"verdict": "pass", "canary": {"requests": 812, "error_rate": 0.0012}}
    written = pushed.advance_rollout(
        "fraud", _step(started, status=status, weight=weight, reason="gate"),
        actor="server:pod-1", expect_generation=1, reason="gate passed", figures=figures,
    )  # fmt: skip
    assert (written.state.status, written.state.weight, written.generation) == (status, weight, 2)
    assert written.updated_by == "server:pod-1"
    assert written.started_by == "key:mae"
    assert pushed.rollout("fraud") == written
    entry = _rollout_audit(pushed)[-1]
    assert (entry.action, entry.actor, entry.reason) == (action, "server:pod-1", "gate passed")
    assert entry.before["state"]["status"] == "running"
    assert entry.after["state"]["status"] == status
    assert entry.after["state"]["generation"] == 2
    assert entry.after["figures"] == figures


def test_a_stale_generation_is_refused_and_nothing_is_written(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    pushed.advance_rollout("fraud", _step(started, weight=25.0, step=1), actor="server:a",
                           expect_generation=1, figures={})  # fmt: skip
    entries = len(pushed.audit())
    with pytest.raises(RegistryConflictError, match="generation 2, not 1") as caught:
        pushed.advance_rollout("fraud", _step(started, status="rolled_back", weight=0.0),
                               actor="server:b", expect_generation=1, figures={})  # fmt: skip
    assert caught.value.field == "generation"
    assert "server:a changed it" in caught.value.message
    assert pushed.rollout("fraud").state.weight == 25.0
    assert len(pushed.audit()) == entries


def test_an_ended_rollout_does_not_change(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    ended = pushed.advance_rollout("fraud", _step(started, status="rolled_back", weight=0.0),
                                   actor="server:a", expect_generation=1, figures={})  # fmt: skip
    with pytest.raises(RegistryConflictError, match=r"has ended \(rolled_back"):
        pushed.advance_rollout("fraud", _step(ended, status="running", weight=25.0),
                               actor="server:a", expect_generation=2, figures={})  # fmt: skip


def test_the_gate_cannot_abort(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    with pytest.raises(RegistryInputError, match="aborting is a person's decision"):
        pushed.advance_rollout("fraud", _step(started, status="aborted", weight=0.0),
                               actor="server:a", expect_generation=1, figures={})  # fmt: skip


def test_advancing_a_name_without_a_rollout_says_how_to_start_one(pushed):
    with pytest.raises(RegistryNotFoundError, match="rtserve rollout start fraud"):
        pushed.advance_rollout("fraud", RolloutState(), actor="server:a", expect_generation=0)


def test_figures_json_cannot_hold_are_stored_readably_or_refused(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    figures = {"p99_ratio": float("inf"), "psi": np.float64(0.25), "requests": np.int64(7),
               "checks": [{"value": float("nan")}]}  # fmt: skip
    pushed.advance_rollout("fraud", _step(started, status="rolled_back", weight=0.0),
                           actor="server:a", expect_generation=1, figures=figures)  # fmt: skip
    stored = _rollout_audit(pushed)[-1].after["figures"]
    assert stored == {"p99_ratio": "inf", "psi": 0.25, "requests": 7,
                      "checks": [{"value": "nan"}]}  # fmt: skip
    with pytest.raises(RegistryInputError, match=r"figures.window is a object") as caught:
        pushed.advance_rollout("fraud", RolloutState(), actor="server:a", expect_generation=2,
                               figures={"window": object()})  # fmt: skip
    assert caught.value.field == "figures"
    assert pushed.verify_audit().ok


# --- people: pause, resume, abort ----------------------------------------------------------


def test_pause_then_resume_restarts_the_dwell(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    paused = pushed.set_rollout_status("fraud", "pause", actor="key:max", reason="holiday")
    assert (paused.state.status, paused.state.weight, paused.generation) == ("paused", 5.0, 2)
    assert paused.state.reason == "holiday"
    assert paused.updated_by == "key:max"
    resumed = pushed.set_rollout_status("fraud", "resume", actor="key:mae")
    assert (resumed.state.status, resumed.generation) == ("running", 3)
    assert resumed.state.since > started.state.since
    assert resumed.state.reason == "resume by key:mae"
    assert [e.action for e in _rollout_audit(pushed)] == [
        "rollout-start", "rollout-pause", "rollout-resume"]  # fmt: skip


def test_abort_ends_any_rollout_that_has_not_ended_with_weight_0(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    pushed.advance_rollout("fraud", _step(started, status="awaiting_approval", weight=100.0),
                           actor="server:a", expect_generation=1, figures={})  # fmt: skip
    aborted = pushed.set_rollout_status("fraud", "abort", actor="key:mae", reason="not now")
    assert (aborted.state.status, aborted.state.weight) == ("aborted", 0.0)
    assert aborted.state.ended
    assert _rollout_audit(pushed)[-1].action == "rollout-abort"


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        (None, "resume", "it is running"),
        ("pause", "pause", "it is paused"),
        ("abort", "abort", "it is aborted"),
        ("abort", "resume", "it is aborted"),
        ("abort", "pause", "it is aborted"),
    ],
)
def test_an_impossible_change_names_the_current_status(pushed, first, then, message):
    pushed.start_rollout(_spec(), actor="key:mae")
    if first is not None:
        pushed.set_rollout_status("fraud", first, actor="key:mae")
    with pytest.raises(RegistryConflictError, match=message) as caught:
        pushed.set_rollout_status("fraud", then, actor="key:mae")
    assert caught.value.field == "status"


def test_an_unknown_change_a_viewer_and_a_missing_rollout_are_refused(pushed):
    with pytest.raises(RegistryNotFoundError, match="fraud has no rollout"):
        pushed.set_rollout_status("fraud", "abort", actor="key:mae")
    with pytest.raises(RegistryNotFoundError, match="'dense' is not in the registry"):
        pushed.set_rollout_status("dense", "abort", actor="key:mae")
    pushed.start_rollout(_spec(), actor="key:mae")
    with pytest.raises(RegistryInputError, match="'promote' is not one of pause, resume, abort"):
        pushed.set_rollout_status("fraud", "promote", actor="key:mae")
    with pytest.raises(RegistryPermissionError, match="maintainer"):
        pushed.set_rollout_status("fraud", "abort", actor="key:vic")


def test_a_gate_that_read_before_a_pause_loses_to_it(pushed):
    started = pushed.start_rollout(_spec(), actor="key:mae")
    pushed.set_rollout_status("fraud", "pause", actor="key:mae")
    with pytest.raises(RegistryConflictError, match="generation 2, not 1"):
        pushed.advance_rollout("fraud", _step(started, weight=25.0, step=1), actor="server:a",
                               expect_generation=1, figures={})  # fmt: skip
    assert pushed.rollout("fraud").state.status == "paused"


# --- around the rollout --------------------------------------------------------------------


def test_a_version_in_a_live_rollout_cannot_be_archived_until_it_ends(pushed):
    pushed.start_rollout(_spec(shadows=["3"]), actor="key:mae")
    for version in ("2", "3"):
        with pytest.raises(RegistryConflictError, match="rtserve rollout abort fraud"):
            pushed.archive("fraud", version, actor="key:mae")
    pushed.set_rollout_status("fraud", "abort", actor="key:mae")
    assert pushed.archive("fraud", "3", actor="key:mae").archived_at is not None


def test_rollout_actions_are_registry_actions_not_server_events_and_the_chain_verifies(pushed):
    assert {"rollout-start", "rollout-step", "rollout-rollback", "rollout-pause",
            "rollout-resume", "rollout-abort", "rollout-await-approval",
            "rollout-promoted"} == ROLLOUT_ACTIONS  # fmt: skip
    assert not ROLLOUT_ACTIONS & SERVER_EVENTS
    with pytest.raises(RegistryInputError, match="not a server event"):
        pushed.audit_event("rollout-step", actor="server:a", subject="fraud")
    started = pushed.start_rollout(_spec(), actor="key:mae")
    pushed.advance_rollout("fraud", _step(started, weight=25.0, step=1), actor="server:a",
                           expect_generation=1, figures={"verdict": "pass"})  # fmt: skip
    pushed.set_rollout_status("fraud", "abort", actor="key:mae")
    assert {e.action for e in _rollout_audit(pushed)} <= ROLLOUT_ACTIONS
    assert pushed.check_audit().ok


def test_a_registry_made_before_rollouts_existed_upgrades_on_open(tmp_path):
    from alembic import command
    from alembic.config import Config

    from rtserve.registry.database import create_engine

    directory = tmp_path / "old-registry"
    directory.mkdir()
    engine = create_engine(f"sqlite:///{directory / 'registry.db'}")
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("rtserve.registry") / "migrations")
    )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text("INSERT INTO registry_roles VALUES ('key:old', 'admin', "
                             "'key:old', '2024-01-01T00:00:00+00:00')"))  # fmt: skip
    engine.dispose()
    reg = Registry.open(directory)
    assert reg.migrated == ["0002"]
    assert reg.roles() == {"key:old": ["admin"]}
    assert reg.rollouts(["fraud"]) == {"fraud": None}
    assert Registry.open(directory).migrated == []
    reg.close()


# --- the race, on PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
def test_two_writers_advancing_from_the_same_generation_exactly_one_wins(
    postgres_url, tmp_path, fraud_versions
):
    store = str(tmp_path / "artifacts")
    setup = Registry.open(url=postgres_url, store=store)
    setup.init("key:admin")
    setup.grant("key:admin", "key:mae", "maintainer")
    setup.grant("key:admin", "key:ann", "approver")
    _with_versions(setup, fraud_versions)
    setup.start_rollout(_spec(), actor="key:mae")
    writers = [Registry.open(url=postgres_url, store=store) for _ in range(2)]
    rounds = 5
    for round_ in range(rounds):
        read = setup.rollout("fraud")
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def decide(reg, worker, read=read, barrier=barrier, outcomes=outcomes):
            state = _step(read, weight=float(10 + worker), reason=f"worker {worker}")
            barrier.wait()
            try:
                reg.advance_rollout("fraud", state, actor=f"server:w{worker}",
                                    expect_generation=read.generation, figures={})  # fmt: skip
                outcomes.append(f"won {worker}")
            except RegistryConflictError:
                outcomes.append("lost")

        threads = [threading.Thread(target=decide, args=(reg, i)) for i, reg in enumerate(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes)[0] == "lost", outcomes
        assert len(outcomes) == 2
        [winner] = [int(o.split()[1]) for o in outcomes if o.startswith("won")]
        after = setup.rollout("fraud")
        assert after.generation == read.generation + 1 == round_ + 2
        assert (after.state.weight, after.updated_by) == (10 + winner, f"server:w{winner}")
    steps = [e for e in setup.audit(subject="fraud") if e.action == "rollout-step"]
    assert len(steps) == rounds
    assert setup.check_audit().ok
    for reg in (*writers, setup):
        reg.close()
