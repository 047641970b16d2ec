"""Stages, approvals with separation of duties, policies, rollback, archive, aliases, roles."""

from __future__ import annotations

import pytest

from rtserve.errors import (
    RegistryConflictError,
    RegistryInputError,
    RegistryPermissionError,
)
from rtserve.registry import Policy, PromotionRequest


@pytest.fixture
def pushed(registry, fraud_versions):
    for label in ("1", "2", "3"):
        registry.push(fraud_versions[label], "key:mae")
    return registry


def _to_production(reg, version, requester="key:mae", approver="key:ann"):
    request = reg.promote("fraud", version, to="production", actor=requester, reason="better")
    return reg.approve(request.id, actor=approver, comment="checked the compare report")


def test_staging_moves_at_once_for_a_maintainer_and_bumps_the_generation(pushed):
    first = pushed.promote("fraud", "1", to="staging", actor="key:mae")
    second = pushed.promote("fraud", "2", to="staging", actor="key:mae")
    assert (first.version, first.generation) == ("1", 1)
    assert (second.version, second.generation) == ("2", 2)
    assert pushed.pointer("fraud", "staging").generation == 2


def test_production_needs_an_approval_before_the_pointer_moves(pushed):
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    assert isinstance(request, PromotionRequest)
    assert request.status == "pending"
    assert pushed.pointer("fraud", "production").version is None
    done = pushed.approve(request.id, actor="key:ann", comment="ok", evidence="sha256:abc")
    assert done.status == "approved"
    assert done.approvals[0].evidence == "sha256:abc"
    assert pushed.pointer("fraud", "production").version == "1"


def test_the_requester_cannot_approve_their_own_promotion(pushed):
    pushed.grant("key:admin", "key:mae", "approver")
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    with pytest.raises(RegistryPermissionError, match="separation of duties"):
        pushed.approve(request.id, actor="key:mae", comment="looks fine to me")
    with pytest.raises(RegistryPermissionError, match="separation of duties"):
        pushed.approve(request.id, actor="key:mae", comment="really")


def test_an_admin_requester_cannot_approve_their_own_promotion_either(pushed):
    request = pushed.promote("fraud", "1", to="production", actor="key:admin")
    with pytest.raises(RegistryPermissionError, match="separation of duties"):
        pushed.approve(request.id, actor="key:admin", comment="ok")


def test_a_viewer_cannot_promote_and_a_maintainer_cannot_approve(pushed):
    with pytest.raises(RegistryPermissionError, match="maintainer"):
        pushed.promote("fraud", "1", to="staging", actor="key:vic")
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    with pytest.raises(RegistryPermissionError, match="approver"):
        pushed.approve(request.id, actor="key:max", comment="ok")


def test_an_approval_needs_a_comment(pushed):
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    with pytest.raises(RegistryInputError, match="comment"):
        pushed.approve(request.id, actor="key:ann", comment="  ")


def test_a_policy_with_two_approvers_moves_the_pointer_on_the_second_approval(pushed):
    pushed.set_policy("key:admin", "fraud", Policy(required_approvals=2))
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    after_one = pushed.approve(request.id, actor="key:ann", comment="ok")
    assert after_one.status == "pending"
    assert pushed.pointer("fraud", "production").version is None
    with pytest.raises(RegistryConflictError, match="counts once"):
        pushed.approve(request.id, actor="key:ann", comment="again")
    after_two = pushed.approve(request.id, actor="key:abe", comment="ok too")
    assert after_two.status == "approved"
    assert pushed.pointer("fraud", "production").version == "1"


def test_a_policy_naming_its_approvers_refuses_other_approvers(pushed):
    pushed.set_policy("key:admin", "fraud", Policy(approvers=("key:abe",)))
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    with pytest.raises(RegistryPermissionError, match="names its approvers"):
        pushed.approve(request.id, actor="key:ann", comment="ok")
    assert pushed.approve(request.id, actor="key:abe", comment="ok").status == "approved"


def test_only_an_admin_changes_a_policy_and_it_never_drops_below_one_approval(pushed):
    with pytest.raises(RegistryPermissionError):
        pushed.set_policy("key:mae", "fraud", Policy(required_approvals=1))
    with pytest.raises(RegistryInputError, match="below 1"):
        pushed.set_policy("key:admin", "fraud", Policy(required_approvals=0))


def test_a_rejected_request_is_closed_and_the_stage_stays(pushed):
    request = pushed.promote("fraud", "1", to="production", actor="key:mae")
    rejected = pushed.reject(request.id, actor="key:ann", comment="AUC dropped")
    assert rejected.status == "rejected"
    with pytest.raises(RegistryConflictError, match="already rejected"):
        pushed.approve(request.id, actor="key:abe", comment="ok")
    assert pushed.pointer("fraud", "production").version is None


def test_rollback_moves_production_back_version_by_version(pushed):
    for version in ("1", "2", "3"):
        _to_production(pushed, version)
    assert pushed.rollback("fraud", actor="key:mae", reason="p99 up").version == "2"
    assert pushed.rollback("fraud", actor="key:mae").version == "1"
    with pytest.raises(RegistryConflictError, match="no earlier version"):
        pushed.rollback("fraud", actor="key:mae")
    moves = pushed.history("fraud", "production")
    assert [(m.from_version, m.to_version, m.how) for m in moves] == [
        (None, "1", "promote"), ("1", "2", "promote"), ("2", "3", "promote"),
        ("3", "2", "rollback"), ("2", "1", "rollback"),
    ]  # fmt: skip
    assert moves[3].reason == "p99 up"
    assert moves[3].actor == "key:mae"
    assert [m.generation for m in moves] == [1, 2, 3, 4, 5]


def test_a_viewer_cannot_roll_back(pushed):
    _to_production(pushed, "1")
    _to_production(pushed, "2")
    with pytest.raises(RegistryPermissionError):
        pushed.rollback("fraud", actor="key:vic")


def test_archiving_refuses_the_production_version_and_clears_staging_and_aliases(pushed):
    _to_production(pushed, "1")
    pushed.promote("fraud", "2", to="staging", actor="key:mae")
    pushed.set_alias("fraud", "challenger", "2", actor="key:mae")
    with pytest.raises(RegistryConflictError, match="rollback"):
        pushed.archive("fraud", "1", actor="key:mae")
    archived = pushed.archive("fraud", "2", actor="key:mae", reason="superseded")
    assert archived.archived_at is not None
    assert pushed.pointer("fraud", "staging").version is None
    assert pushed.pointer("fraud", "challenger").version is None
    with pytest.raises(RegistryConflictError, match="archived"):
        pushed.promote("fraud", "2", to="production", actor="key:mae")


def test_archiving_closes_the_version_s_pending_requests(pushed):
    request = pushed.promote("fraud", "2", to="production", actor="key:mae")
    pushed.archive("fraud", "2", actor="key:mae")
    assert pushed.request(request.id).status == "rejected"


def test_aliases_point_anywhere_but_never_shadow_a_stage_or_a_version(pushed):
    assert pushed.set_alias("fraud", "champion", "1", actor="key:mae").version == "1"
    assert pushed.set_alias("fraud", "champion", "3", actor="key:mae").generation == 2
    with pytest.raises(RegistryInputError):
        pushed.set_alias("fraud", "production", "1", actor="key:mae")
    pushed.remove_alias("fraud", "champion", actor="key:mae")
    assert pushed.pointer("fraud", "champion").version is None


def test_only_an_admin_grants_roles_and_the_first_init_wins(pushed):
    with pytest.raises(RegistryPermissionError, match="admin"):
        pushed.grant("key:mae", "key:mae", "approver")
    with pytest.raises(RegistryConflictError, match="already initialised"):
        pushed.init("key:mae")
    with pytest.raises(RegistryConflictError, match="last admin"):
        pushed.revoke("key:admin", "key:admin", "admin")


def test_an_uninitialised_registry_says_to_run_init(tmp_path, fraud_versions):
    from rtserve.registry import Registry

    reg = Registry.open(tmp_path / "reg")
    with pytest.raises(RegistryPermissionError, match="registry init"):
        reg.push(fraud_versions["1"], "key:alice")
    reg.close()


def test_show_lists_the_requests_with_their_approvals_and_the_history(pushed):
    _to_production(pushed, "1")
    shown = pushed.show("fraud@production")
    assert shown["version"]["version"] == "1"
    [request] = shown["requests"]
    assert request["approvals"][0]["comment"] == "checked the compare report"
    assert shown["history"][0]["to_version"] == "1"
    assert shown["pointers"]["production"]["generation"] == 1


def test_polling_many_pointers_is_one_read(pushed):
    _to_production(pushed, "1")
    found = pushed.pointers(
        [("fraud", "production"), ("fraud", "staging"), ("churn", "production")]
    )
    assert found[("fraud", "production")].version == "1"
    assert found[("fraud", "staging")] is None
    assert found[("churn", "production")] is None
