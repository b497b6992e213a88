"""What the node says about itself (gsbp_ros.nodes.health): its "not ready" answers and the
level and message of its /diagnostics status, for each lifecycle state and engine status."""

from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="ROS 2 message wheels are not installed")

from diagnostic_msgs.msg import DiagnosticStatus

from gsbp_ros.engine import EngineStatus
from gsbp_ros.nodes.health import Health, assess, diagnostic_status, engine_phase, not_ready

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
PARAMS = {
    "scene_path": "/data/kitchen/scene.ply",
    "cameras_path": "/data/kitchen/sparse/0",
    "frame_id": "map",
}


def _ready(**kw) -> EngineStatus:
    base = {
        "state": "ready",
        "message": "ready",
        "num_gaussians": 1000,
        "views_done": 8,
        "views_total": 8,
        "active_sources": ["dinov2", "clip"],
        "seen_fraction": 0.93,
    }
    return EngineStatus(**{**base, **kw})


def test_answers_until_active():
    assert not_ready(Health("active", engine=_ready())) == ""
    assert (
        not_ready(Health("unconfigured"))
        == "not ready: unconfigured (waiting for the configure transition)"
    )
    assert (
        not_ready(Health("unconfigured", failure="scene_path is not set: ..."))
        == "not ready: unconfigured: start-up failed: scene_path is not set: ..."
    )
    assert not_ready(Health("inactive", engine=_ready())) == (
        "not ready: inactive (waiting for the activate transition)"
    )
    assert not_ready(Health("finalized")) == "not ready: finalized (the node was shut down)"
    assert not_ready(Health("deactivating")) == "not ready: deactivating"
    projecting = EngineStatus(state="backprojecting", views_done=12, views_total=40, eta_s=8.4)
    assert (
        not_ready(Health("configuring", engine=projecting))
        == "not ready: configuring: back-projecting 12/40 views, ETA 8 s"
    )
    loading = EngineStatus(state="loading", message="loading scene /data/kitchen/scene.ply")
    assert not_ready(Health("configuring", engine=loading)) == (
        "not ready: configuring: loading scene /data/kitchen/scene.ply"
    )
    assert engine_phase(None) == "starting"
    assert engine_phase(EngineStatus(state="backprojecting", views_total=3)) == (
        "back-projecting 0/3 views"
    )


def test_levels_and_messages():
    # Serving and nothing wrong: OK.
    level, message, state = assess(Health("active", engine=_ready(), params=PARAMS))
    assert (level, state) == (OK, "active")
    assert message == "active: 1000 Gaussians, feature sources: dinov2, clip"
    # Not serving: WARN with the answer the services give.
    level, message, state = assess(Health("inactive", engine=_ready(), params=PARAMS))
    assert (level, state) == (WARN, "inactive") and message.startswith("not ready: inactive")
    # A failed configure: ERROR, naming the parameter whose value the message quotes.
    failure = "cannot read /data/kitchen/scene.ply: unknown scene file type '.xyz'"
    level, message, state = assess(Health("unconfigured", failure=failure, params=PARAMS))
    assert (level, state) == (ERROR, "failed")
    assert message == f"start-up failed: {failure} (parameter scene_path)"
    level, message, _ = assess(Health("unconfigured", failure="scene_path is not set: x"))
    assert level == ERROR and message == "start-up failed: scene_path is not set: x"
    failed = EngineStatus(state="failed", message="no images in /data/kitchen/sparse/0")
    level, message, _ = assess(Health("configuring", engine=failed, params=PARAMS))
    assert level == ERROR and message.endswith("(parameter cameras_path)")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            _ready(active_sources=["labels"], inactive_sources={"dinov2": "no weights"}),
            ["requested feature source(s) inactive: dinov2 (check dinov2_model)"],
        ),
        (
            _ready(active_sources=[], inactive_sources={"labels": "not set"}),
            [
                "labels (check label_maps_dir and label_names)",
                "no feature source is active (feature_sources)",
            ],
        ),
        (
            _ready(seen_fraction=0.2),
            ["the views saw only 20% of the Gaussians: check cameras_path and cameras_transform"],
        ),
    ],
)
def test_serving_with_a_problem_warns(status, expected):
    level, message, state = assess(Health("active", engine=status, params=PARAMS))
    assert (level, state) == (WARN, "active")
    for text in expected:
        assert text in message, message


def test_status_message_holds_progress_and_sources():
    st = EngineStatus(
        state="backprojecting", views_done=3, views_total=9, eta_s=4.0, num_gaussians=50
    )
    status = diagnostic_status(
        Health("configuring", engine=st, params=PARAMS), name="/gsbp: field", last_query={}
    )
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == WARN and status.name == "/gsbp: field"
    assert status.hardware_id == PARAMS["scene_path"]
    assert values["state"] == "configuring" and values["engine_state"] == "backprojecting"
    assert (values["views_done"], values["views_total"], values["eta_s"]) == ("3", "9", "4.0")
    assert values["last_query"] == "" and values["seen_fraction"] == ""
