"""The HTTP side and the engine enforce one limits policy and one deadline policy, built once."""

from __future__ import annotations

from starlette.testclient import TestClient

from rtserve.server.app import create_app
from rtserve.settings import Settings


def test_the_request_guards_share_the_data_planes_limits_and_deadline_policy() -> None:
    app = create_app(Settings.load(bundles=[], limits={"max_instances": 7}))
    with TestClient(app):
        guards, plane = app.state.guards, app.state.dataplane
        assert guards.limits is plane.limits
        assert guards.deadlines is plane.deadlines
        assert guards.limits.max_instances == 7
