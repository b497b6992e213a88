"""Grasps in the ROS layer: the frame convention of gsbp_ros/Grasp, ~/grasp_poses and the
gripper markers, then the node's Segment / TransferAffordance answers over DDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ros_support import SCENE_TO_FRAME, wait_until_ready

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def handle_grasps():
    from gsbp_ros.demo_scene import make_demo_scene
    from gsbp_ros.grasps import CollisionModel, GraspOptions, plan_grasps
    from gsbp_ros.gripper import ParallelJawGripper

    d = make_demo_scene(density=0.5)
    sc = d.scene
    model = CollisionModel.from_gaussians(
        sc.means.numpy(),
        sc.quats.numpy(),
        sc.log_scales.numpy(),
        torch.sigmoid(sc.logit_opacities).numpy(),
    )
    handle = np.flatnonzero(d.part_labels.numpy() == d.part_names.index("mug_handle"))
    gripper = ParallelJawGripper(max_opening=0.06)
    grasps = plan_grasps(model, handle, gripper=gripper, options=GraspOptions(max_grasps=4))
    assert len(grasps) == 4, grasps.message
    return grasps, gripper


def _transform():
    from gsbp_ros.nodes.conversions import SceneToFrame

    return SceneToFrame.from_params(
        SCENE_TO_FRAME["translation"], SCENE_TO_FRAME["rotation"], SCENE_TO_FRAME["scale"]
    )


def _matrix(q) -> np.ndarray:
    from gsbp_ros.nodes.conversions import quaternion_to_matrix

    return quaternion_to_matrix([q.x, q.y, q.z, q.w])


def test_grasp_messages_follow_the_frame_convention(interfaces, handle_grasps) -> None:
    """+z approach, +y closing, origin between the fingertips, in frame_id (rotated 90 deg,
    scaled 2, moved): every part of the pose and the width go through the transform."""
    from std_msgs.msg import Header

    from gsbp_ros.nodes.grasp_msgs import (
        NodeGrasps,
        grasp_messages,
        grasp_pose_array,
        gripper_markers,
    )

    grasps, gripper = handle_grasps
    t = _transform()
    result = NodeGrasps(sets=[grasps], ranked=[(0, i) for i in range(4)], gripper=gripper)
    msgs = grasp_messages(result, t)
    header = Header(frame_id="map")
    for i, m in enumerate(msgs):
        p = m.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], t.points(grasps.positions[i]), atol=1e-12)
        rot = _matrix(m.pose.orientation)
        np.testing.assert_allclose(rot[:, 2], t.vectors(grasps.rotations[i][:, 2]), atol=1e-9)
        np.testing.assert_allclose(rot[:, 1], t.vectors(grasps.rotations[i][:, 1]), atol=1e-9)
        assert m.width == pytest.approx(2.0 * grasps.widths[i])
        assert m.score == pytest.approx(grasps.scores[i]) and m.region == grasps.name
    poses = grasp_pose_array(msgs, header)
    assert poses.header.frame_id == "map" and [q.position for q in poses.poses] == [
        m.pose.position for m in msgs
    ]
    markers = gripper_markers(result, t, header)
    assert len(markers) == 12 and len({(m.ns, m.id) for m in markers}) == 12
    assert markers[0].color.g > markers[3].color.g  # the best one stands out
    # Fingers: centred at +-(width/2 + thickness/2) along y and half a finger length back
    # along -z from the origin, in frame units (x2).
    for i, m in enumerate(msgs):
        o = np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z])
        rot = _matrix(m.pose.orientation)
        half_y = m.width / 2 + 2.0 * gripper.finger_thickness / 2
        for b, sign in ((0, -1.0), (1, 1.0)):
            c = markers[3 * i + b].pose.position
            want = o + sign * half_y * rot[:, 1] - 2.0 * gripper.finger_length / 2 * rot[:, 2]
            np.testing.assert_allclose([c.x, c.y, c.z], want, atol=1e-9)
            s = markers[3 * i + b].scale
            np.testing.assert_allclose(
                [s.x, s.y, s.z],
                2.0
                * np.array([gripper.finger_width, gripper.finger_thickness, gripper.finger_length]),
            )


def test_gripper_parameters_are_in_frame_units(interfaces) -> None:
    from gsbp_ros.gripper import GripperError
    from gsbp_ros.nodes.grasp_msgs import GRIPPER_FIELDS, gripper_in_scene
    from gsbp_ros.nodes.params import PARAMS_BY_NAME

    values = {f"gripper.{f}": PARAMS_BY_NAME[f"gripper.{f}"].default for f in GRIPPER_FIELDS}
    g = gripper_in_scene(values, _transform())  # scale 2: frame units are half scene units
    assert g.max_opening == pytest.approx(values["gripper.max_opening"] / 2)
    with pytest.raises(GripperError, match="finger_length"):
        gripper_in_scene({**values, "gripper.finger_length": float("nan")}, _transform())


def test_grasp_parameters_are_checked_like_the_others() -> None:
    from gsbp_ros.nodes.grasp_msgs import GRASP_PARAMETERS
    from gsbp_ros.nodes.params import PARAMS_BY_NAME, check_value

    for name in GRASP_PARAMETERS:
        p = PARAMS_BY_NAME[name]
        assert not p.read_only and check_value(name, p.default) == "", name
        if name.startswith("gripper."):
            for bad in (0.0, -0.01, float("nan"), float("inf")):
                assert "must be a positive number" in check_value(name, bad), (name, bad)
    assert check_value("max_grasps", 0) == ""
    assert "at least 0" in check_value("max_grasps", -1)


def test_segment_and_transfer_answer_with_grasps(nodes, ros_client, demo) -> None:
    """The node's answers carry ranked grasps in frame_id, ~/grasp_poses repeats them, and
    the transfer's gripper markers arrive with its regions."""
    from geometry_msgs.msg import PoseArray
    from visualization_msgs.msg import MarkerArray

    from gsbp_ros.nodes.demo_client import demo_views, transfer_request
    from gsbp_ros.scene import GaussianScene
    from gsbp_ros.srv import Segment, TransferAffordance

    good = nodes["good"]
    wait_until_ready(ros_client, good)
    poses = ros_client.subscribe(PoseArray, good.service("grasp_poses"))
    req = Segment.Request(positive=["mug"], negative=["table"])
    res = ros_client.call(Segment, good.service("segment"), req)
    assert res.success, res.message
    assert 1 <= len(res.grasps) <= 10, res.message
    scores = [g.score for g in res.grasps]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    t = _transform()
    means = GaussianScene.load(demo["dir"] / "scene.ply").means.numpy().astype(np.float64)
    mug = t.points(means[np.asarray(res.indices, dtype=np.int64)])
    for g in res.grasps:
        assert g.region == "mug" and 0 < g.width <= 0.08  # frame units, the yaml's gripper
        p = np.array([g.pose.position.x, g.pose.position.y, g.pose.position.z])
        assert np.linalg.norm(mug - p, axis=1).min() < 0.01  # on the mug, in frame_id
    poses.wait_for(
        lambda m: (
            any(a.header.stamp == res.header.stamp for a in m)
            and [x.pose for x in res.grasps]
            == [a for a in m if a.header.stamp == res.header.stamp][-1].poses
        )
    )

    markers = ros_client.subscribe(MarkerArray, good.service("affordance_markers"))
    cams, images, masks, labels = demo_views(demo["dir"], 3)
    treq = transfer_request(cams, images, masks, labels, t, 5)
    tres = ros_client.call(TransferAffordance, good.service("transfer_affordance"), treq)
    assert tres.success, tres.message
    assert tres.grasps and {g.region for g in tres.grasps} == {"grasp"}  # grasp_labels

    def grippers(msgs):
        return [
            m
            for a in msgs
            for m in a.markers
            if m.ns == "grippers" and m.header.stamp == tres.header.stamp
        ]

    markers.wait_for(lambda m: len(grippers(m)) == 3 * len(tres.grasps))
