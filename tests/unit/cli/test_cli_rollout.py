"""``rtserve rollout`` as a user runs it: start from options or a file, status with the decisions
and their figures, pause/resume/abort, check, and one ``error:`` line for every bad input."""

from __future__ import annotations

import json
import socket
import time

import pytest

from rtserve.cli.options import span_seconds
from rtserve.registry import Registry
from tests.registry_support import MAINTAINER, build_version, open_registry, push, to_production


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """dense@1, dense@2 and dense@3: tiny logistic regressions."""
    root = tmp_path_factory.mktemp("rollout-bundles")
    return {label: build_version(root, label) for label in ("1", "2", "3")}


@pytest.fixture
def reg_dir(tmp_path, bundles):
    """A registry with the three versions pushed and dense@1 in production."""
    directory = tmp_path / "registry"
    reg = open_registry(directory)
    for bundle in bundles.values():
        push(reg, bundle)
    to_production(reg, "1")
    reg.close()
    return directory


@pytest.fixture
def rollout(rtserve_cli, reg_dir):
    """``rollout("start", "dense", ...)``: the group's registry options, acting as maintainer."""

    def invoke(*args, actor=MAINTAINER, directory=reg_dir):
        return rtserve_cli("rollout", "--registry", directory, "--actor", actor, *args)

    return invoke


def _stored(directory):
    reg = Registry.open(directory)
    try:
        return reg.rollout("dense")
    finally:
        reg.close()


def _ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def _error(result):
    """The one ``error:`` line a refused command prints (exit 1, nothing on stdout)."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- start ---------------------------------------------------------------------------------


def test_start_from_options_takes_production_from_the_stage(rollout, reg_dir):
    out = _ok(rollout("start", "dense", "--canary", "2", "--steps", "5,25,50,100", "--dwell",
                      "10m", "--shadow", "3", "--segments", "a, b", "--reason", "retrained"))  # fmt: skip
    assert out.strip() == (
        "dense: rollout started: running at 5% (generation 1); production 1; canary 2 at 5%; "
        "steps 5, 25, 50, 100 every 600 s; shadows 3; segments a, b"
    )
    stored = _stored(reg_dir)
    spec = stored.spec
    assert (spec.production, spec.canary.version, spec.steps) == ("1", "2", (5, 25, 50, 100))
    assert (spec.dwell_s, spec.shadows, spec.segments) == (600, ("3",), ("a", "b"))
    assert stored.started_by == MAINTAINER


@pytest.mark.parametrize(("dwell", "seconds"), [("600", 600), ("10m", 600), ("1h", 3600)])
def test_dwell_accepts_seconds_minutes_and_hours(rollout, reg_dir, dwell, seconds):
    _ok(rollout("start", "dense", "--canary", "2", "--dwell", dwell))
    assert _stored(reg_dir).spec.dwell_s == seconds


def test_the_duration_parser_is_the_one_decisions_use():
    assert span_seconds("90s") == 90
    assert span_seconds("1.5h") == 5400
    assert span_seconds("600") == 600
    assert span_seconds("600", bare_seconds=False) is None
    assert span_seconds("10 minutes") is None


def test_start_json_is_the_stored_record(rollout, reg_dir):
    document = json.loads(_ok(rollout("--json", "start", "dense", "--canary", "2", "--weight",
                                      "10")))  # fmt: skip
    assert set(document) == {"name", "spec", "state", "generation", "started_by", "started_at",
                             "updated_by", "updated_at"}  # fmt: skip
    assert document["spec"]["canary"] == {"version": "2", "weight": 10.0, "key": None}
    assert (document["state"]["status"], document["state"]["weight"]) == ("running", 10.0)
    assert document["generation"] == 1
    assert document == _stored(reg_dir).to_dict()


def test_start_an_ab_split_with_a_gate_file(rollout, reg_dir, tmp_path):
    gate = _write(tmp_path / "gate.yaml", "gate:\n  min_requests: 50\n  max_psi: 0.1\n")
    _ok(rollout("start", "dense", "--ab-key", "header:X-User-Id", "--split", "1=60,2=40",
                "--gate", gate))  # fmt: skip
    spec = _stored(reg_dir).spec
    assert (spec.ab.key, spec.ab.split) == ("header:X-User-Id", {"1": 60.0, "2": 40.0})
    assert (spec.gate.min_requests, spec.gate.max_psi) == (50, 0.1)


def test_start_from_a_spec_file_without_model_or_production(rollout, reg_dir, tmp_path):
    spec = _write(tmp_path / "canary.yaml", 'canary: {version: "3", weight: 2}\nshadows: ["2"]\n'
                  "on_break: pause\n")  # fmt: skip
    _ok(rollout("start", "dense", "--spec", spec))
    stored = _stored(reg_dir).spec
    assert (stored.production, stored.canary.version, stored.on_break) == ("1", "3", "pause")


def test_a_spec_for_another_model_or_mixed_with_options_is_refused(rollout, tmp_path):
    other = _write(tmp_path / "other.yaml", 'model: fraud\nproduction: "1"\n')
    assert "is for model 'fraud', not 'dense'" in _error(rollout("start", "dense", "--spec", other))
    line = _error(rollout("start", "dense", "--spec", other, "--canary", "2"))
    assert "drop --canary" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--split", "1=50,2=50"], "needs both --ab-key"),
        (["--ab-key", "user", "--split", "1=50,2"], "'2' is not VERSION=PERCENT"),
        (["--ab-key", "user", "--split", "1=50,1=50"], "names version '1' twice"),
        (["--ab-key", "user", "--split", "1=50,2=40"], "ab: the A/B shares add up to 90"),
        (["--canary", "2", "--steps", "5,x"], "'x' is not a number"),
        (["--canary", "2", "--steps", "25,5"], "steps are increasing percentages in (0, 100]"),
        (["--canary", "2", "--dwell", "10 minutes"], "--dwell '10 minutes' is not a duration"),
        (["--canary", "2", "--weight", "150"], "canary.weight: Input should be less than"),
        (["--canary", "1"], "canary version '1' is the production version"),
        (["--weight", "10"], "--weight, --steps and --dwell shape a canary"),
        (["--canary", "2", "--weight", "10", "--steps", "5,25"], "starts at the first step"),
        ([], "say what to roll out"),
        (["--canary", "9"], "dense@9, which is not in the registry"),
        (["--canary", "2", "--production", "3"], "dense@production is '1'"),
    ],
)
def test_bad_start_options_end_in_one_error_line(rollout, args, expected):
    assert expected in _error(rollout("start", "dense", *args))


def test_a_start_needs_a_production_version_and_the_maintainer_role(
    rtserve_cli, tmp_path, bundles, rollout
):
    bare = tmp_path / "bare"
    reg = open_registry(bare)
    push(reg, bundles["1"])
    push(reg, bundles["2"])
    reg.close()
    line = _error(rollout("start", "dense", "--canary", "2", directory=bare))
    assert "dense has no production version" in line
    assert "--production VERSION" in line
    _ok(rollout("start", "dense", "--canary", "2", "--production", "1", directory=bare))
    assert "needs the registry role 'maintainer'" in _error(
        rollout("abort", "dense", actor="key:ann", directory=bare)
    )


def test_a_second_start_says_how_to_abort_the_first(rollout):
    _ok(rollout("start", "dense", "--canary", "2"))
    line = _error(rollout("start", "dense", "--canary", "3"))
    assert "already has a rollout that has not ended" in line
    assert "rtserve rollout abort dense" in line


# --- pause, resume, abort ------------------------------------------------------------------


def test_pause_resume_and_abort(rollout, reg_dir):
    _ok(rollout("start", "dense", "--canary", "2", "--weight", "20"))
    assert _ok(rollout("pause", "dense", "--reason", "holiday")).startswith(
        "dense: paused at 20% (generation 2)"
    )
    assert _ok(rollout("resume", "dense")).startswith("dense: running at 20% (generation 3)")
    document = json.loads(_ok(rollout("--json", "abort", "dense", "--reason", "bad data")))
    assert document["state"] | {"since": 0} == {"status": "aborted", "weight": 0.0, "step": 0,
                                                "since": 0, "reason": "bad data",
                                                "generation": 4}  # fmt: skip
    reg = Registry.open(reg_dir)
    actions = [e.action for e in reg.audit(subject="dense") if e.action.startswith("rollout-")]
    reg.close()
    assert actions == ["rollout-start", "rollout-pause", "rollout-resume", "rollout-abort"]


def test_an_impossible_change_names_the_current_status(rollout):
    assert "dense has no rollout" in _error(rollout("pause", "dense"))
    _ok(rollout("start", "dense", "--canary", "2"))
    assert "cannot resume the rollout of dense: it is running" in _error(rollout("resume", "dense"))
    _ok(rollout("abort", "dense"))
    assert "it is aborted" in _error(rollout("abort", "dense"))


# --- status --------------------------------------------------------------------------------


def _gate_step(directory):
    """What a server's gate does: step the canary to 25% with the figures that drove it."""
    reg = Registry.open(directory)
    current = reg.rollout("dense")
    state = current.state.model_copy(update={"weight": 25.0, "step": 1, "since": time.time(),
                                             "reason": "gate passed"})  # fmt: skip
    reg.advance_rollout("dense", state, actor="server:pod-1", expect_generation=1,
                        reason="gate passed at 5%", figures={"verdict": "pass",
                        "canary": {"requests": 812, "error_rate": 0.001}})  # fmt: skip
    reg.close()


def test_status_shows_the_state_and_every_decision_with_its_figures(rollout, reg_dir):
    _ok(rollout("start", "dense", "--canary", "2", "--steps", "5,25,100", "--reason", "try"))
    _gate_step(reg_dir)
    out = _ok(rollout("status", "dense"))
    lines = out.splitlines()
    assert lines[0] == ("dense: running at 25% (generation 2); production 1; canary 2 at 5%; "
                        "steps 5, 25, 100 every 600 s")  # fmt: skip
    assert "gate passed" in lines[1]
    assert "last changed by server:pod-1" in lines[2]
    assert lines[4] == "history:"
    assert lines[5].endswith(f"{MAINTAINER} rollout-start: running 5%  # try")
    assert lines[6].endswith("server:pod-1 rollout-step: running 25%  # gate passed at 5%")
    assert json.loads(lines[7].split("figures: ", 1)[1])["canary"]["requests"] == 812


def test_status_json_shape(rollout, reg_dir):
    _ok(rollout("start", "dense", "--canary", "2"))
    _gate_step(reg_dir)
    document = json.loads(_ok(rollout("--json", "status", "dense")))
    assert set(document) == {"name", "rollout", "history"}
    assert document["rollout"]["state"]["weight"] == 25.0
    assert [e["action"] for e in document["history"]] == ["rollout-start", "rollout-step"]
    assert document["history"][1]["after"]["figures"]["verdict"] == "pass"


def test_status_of_a_model_without_a_rollout(rollout):
    document = json.loads(_ok(rollout("--json", "status", "dense")))
    assert document == {"name": "dense", "rollout": None, "history": []}
    result = rollout("status", "dense")
    assert result.exit_code == 0
    assert "dense has no rollout" in result.stderr


def test_status_with_a_server_that_does_not_answer_is_one_clear_error(rollout):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    _ok(rollout("start", "dense", "--canary", "2"))
    line = _error(rollout("status", "dense", "--server", f"http://127.0.0.1:{port}"))
    assert f"cannot read http://127.0.0.1:{port}/v1/models/dense/rollout: ConnectError" in line
    assert "check --server" in line
    assert "check --server" in _error(rollout("status", "dense", "--server", "nonsense://x"))


# --- check ---------------------------------------------------------------------------------


def test_check_accepts_a_spec_and_a_list_of_specs(rtserve_cli, tmp_path):
    one = _write(tmp_path / "one.yaml", 'model: dense\nproduction: "1"\ncanary: {version: "2"}\n')
    out = _ok(rtserve_cli("rollout", "check", one))
    assert out.strip() == f"{one}: dense: ok: production 1; canary 2 at 5%"
    many = _write(tmp_path / "many.yaml", "rollouts:\n"
                  '  - {model: dense, production: "1", shadows: ["3"]}\n'
                  '  - {model: fraud, production: "4", ab: {key: user, split: {"4": 50, "5": 50}}}\n')  # fmt: skip
    specs = json.loads(_ok(rtserve_cli("rollout", "--json", "check", many)))
    assert [s["model"] for s in specs] == ["dense", "fraud"]
    assert specs[1]["ab"]["split"] == {"4": 50.0, "5": 50.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model: dense\nproduction: "1"\ncanary: {version: "2", weight: 150}\n',
         "rollout spec: canary.weight: Input should be less than or equal to 100"),
        ('model: dense\nproduction: "1"\ncanary: {version: "2"}\nstepz: [5]\n',
         "rollout spec: stepz: Extra inputs are not permitted"),
        ('production: "1"\n', "rollout spec: model: Field required"),
        ("model: [dense\n", "is not valid YAML"),
        ("rollouts:\n  - {model: dense, production: '1'}\n  - {model: dense, production: '2'}\n",
         "gives a model twice"),
    ],
)  # fmt: skip
def test_check_names_the_key_that_breaks_a_rule(rtserve_cli, tmp_path, text, expected):
    path = _write(tmp_path / "spec.yaml", text)
    assert expected in _error(rtserve_cli("rollout", "check", path))


def test_check_of_a_missing_file(rtserve_cli, tmp_path):
    line = _error(rtserve_cli("rollout", "check", tmp_path / "nope.yaml"))
    assert "cannot be read: No such file or directory" in line
