"""The node as a managed (lifecycle) node, driven over DDS by this test as a lifecycle manager
would: autostart false, then configure / activate / deactivate / cleanup / shutdown with
lifecycle_msgs/ChangeState, checking that the services answer only while active and that
transitions asked in the wrong state are refused. Both nodes start from the demo node's
cached feature field (the `good` fixture has built it)."""

from __future__ import annotations

import pytest
from ros_support import (
    NodeProcess,
    all_parameters,
    change_state,
    demo_node_params,
    get_state,
    wait_for,
)

pytestmark = pytest.mark.ros


def _segment(client, node, positive=("mug",)):
    from gsbp_ros.srv import Segment

    req = Segment.Request(positive=list(positive), negative=["table"])
    return client.call(Segment, node.service("segment"), req, timeout=60)


def _set(client, node, name, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return client.call(SetParameters, node.service("set_parameters"), req).results[0]


def test_lifecycle_walk_over_dds(good, nodes, demo, ros_env, ros_client, tmp_path):
    from sensor_msgs.msg import PointCloud2

    params = {
        **demo_node_params(demo, tmp_path / "output", nodes["cache_dir"]),
        "autostart": False,
    }
    node = NodeProcess("gsbp_managed", ros_env, params, tmp_path)
    try:
        assert get_state(ros_client, node.fqn) == "unconfigured"
        res = _segment(ros_client, node)
        assert not res.success
        assert res.message == "not ready: unconfigured (waiting for the configure transition)"
        # Transitions that do not start from "unconfigured" are refused, saying why.
        for transition in ("activate", "deactivate", "cleanup"):
            assert not change_state(ros_client, node.fqn, transition)
        node.wait_for_log("transition 'activate' refused in state 'unconfigured'; available:")
        assert get_state(ros_client, node.fqn) == "unconfigured"

        assert change_state(ros_client, node.fqn, "configure")
        assert get_state(ros_client, node.fqn) == "inactive"
        res = _segment(ros_client, node)
        assert not res.success
        assert res.message == "not ready: inactive (waiting for the activate transition)"
        assert not change_state(ros_client, node.fqn, "configure")
        # Parameters read at configure cannot change now; the run-time ones can.
        refused = _set(ros_client, node, "scene_path", "/elsewhere.ply")
        assert not refused.successful and "it is inactive" in refused.reason
        assert _set(ros_client, node, "marker_scale", 0.02).successful

        scene = ros_client.subscribe(PointCloud2, node.service("scene_cloud"))
        assert change_state(ros_client, node.fqn, "activate")
        assert get_state(ros_client, node.fqn) == "active"
        res = _segment(ros_client, node)
        assert res.success, res.message
        assert len(res.indices) > 0
        scene.wait_for(lambda m: len(m) > 0, timeout=30)  # published on activation

        assert change_state(ros_client, node.fqn, "deactivate")
        assert get_state(ros_client, node.fqn) == "inactive"
        res = _segment(ros_client, node)
        assert not res.success and res.message.startswith("not ready: inactive")

        assert change_state(ros_client, node.fqn, "cleanup")
        assert get_state(ros_client, node.fqn) == "unconfigured"
        res = _segment(ros_client, node)
        assert not res.success and res.message.startswith("not ready: unconfigured")
        assert _set(ros_client, node, "scene_path", params["scene_path"]).successful

        assert change_state(ros_client, node.fqn, "shutdown")
        assert get_state(ros_client, node.fqn) == "finalized"
        res = _segment(ros_client, node)
        assert res.message == "not ready: finalized (the node was shut down)"
        assert not change_state(ros_client, node.fqn, "configure")
        assert node.alive()
    finally:
        code = node.stop()
    log = node.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_bad_parameter_fails_configure_and_can_be_fixed(
    good, nodes, demo, ros_env, ros_client, tmp_path
):
    """A wrong-typed value from the command line: the node comes up, its configure fails
    with a message naming the parameter, every parameter still reads (the bad one at its
    default), and after fixing it while unconfigured a new configure succeeds. An integer
    given for a double is taken as the double."""
    params = {
        **demo_node_params(demo, tmp_path / "output", nodes["cache_dir"]),
        "render_scale": True,  # (rcl drops a string over the params file's double)
        "marker_scale": 1,
    }
    node = NodeProcess("gsbp_bad_param", ros_env, params, tmp_path)
    try:

        def failed():
            return "start-up failed" in _segment(ros_client, node).message

        wait_for(failed, 120, "the failed configure")
        res = _segment(ros_client, node)
        assert res.message == (
            "not ready: unconfigured: start-up failed: render_scale must be a number "
            "(double), got bool True (params file or command line)"
        )
        values = all_parameters(ros_client, node.fqn)
        assert values["render_scale"] == 1.0 and values["marker_scale"] == 1.0
        assert not _set(ros_client, node, "render_scale", "0.5").successful  # still a string
        assert _set(ros_client, node, "render_scale", 1.0).successful
        assert change_state(ros_client, node.fqn, "configure")
        assert change_state(ros_client, node.fqn, "activate")
        assert _segment(ros_client, node).success
    finally:
        code = node.stop()
    assert code == 0, node.log()[-3000:]
