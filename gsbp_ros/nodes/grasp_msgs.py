"""Grasps for the ROS layer: planning with the node's parameters, ``gsbp_ros/Grasp``
messages, the ``~/grasp_poses`` PoseArray and gripper markers.

Frames: the planner works in the scene's frame and units; the node's gripper parameters are
in ``frame_id`` units, so they are divided by the scene-to-frame scale before planning, and
every pose and width is mapped into ``frame_id`` afterwards (:class:`SceneToFrame`). The grasp
frame (:mod:`gsbp_ros.gripper`): origin between the fingertips, +z approach (toward the
object), +y closing direction, +x = y x z.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, Quaternion, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from gsbp_ros.errors import GsbpError
from gsbp_ros.gripper import ParallelJawGripper
from gsbp_ros.nodes.frame_msgs import SceneToFrame
from gsbp_ros.results import GraspSet

#: Node parameters that shape grasps (gsbp_ros/nodes/params.py declares them): one
#: ``gripper.<field>`` per field of the gripper model.
GRIPPER_FIELDS = tuple(f.name for f in dataclasses.fields(ParallelJawGripper))
GRASP_PARAMETERS = ("max_grasps", "grasp_labels", *(f"gripper.{f}" for f in GRIPPER_FIELDS))
#: Marker namespace of the grippers in ~/affordance_markers.
GRASP_MARKER_NS = "grippers"
BEST_COLOR = (0.1, 0.8, 0.1, 0.85)
OTHER_COLOR = (0.1, 0.55, 0.95, 0.45)


def read_grasp_parameters(node) -> dict[str, Any]:
    """The current values of :data:`GRASP_PARAMETERS` (they may change at run time; an
    unset array reads as empty)."""
    values = {name: node.get_parameter(name).value for name in GRASP_PARAMETERS}
    # [""] is how an empty string list is written in parameters (see params.py)
    values["grasp_labels"] = [v for v in (values["grasp_labels"] or []) if v]
    return values


def gripper_in_scene(values: Mapping[str, Any], transform: SceneToFrame) -> ParallelJawGripper:
    """The gripper of the parameters (frame units) in scene units."""
    frame = ParallelJawGripper(**{f: float(values[f"gripper.{f}"]) for f in GRIPPER_FIELDS})
    return frame.validated().scaled(1.0 / transform.scale)


@dataclass
class NodeGrasps:
    """Grasps of one request: per region (scene frame), and the best ``max_grasps`` over all.

    Attributes:
        sets: one GraspSet per region that was planned.
        ranked: (set index, grasp index) of the returned grasps, best first.
        gripper: the gripper in scene units. note: one line for the response's message.
    """

    sets: list[GraspSet] = field(default_factory=list)
    ranked: list[tuple[int, int]] = field(default_factory=list)
    gripper: ParallelJawGripper | None = None
    note: str = ""


def plan_node_grasps(
    engine, selections: Sequence, values: Mapping[str, Any], transform: SceneToFrame
) -> NodeGrasps:
    """Grasps on each selection, merged by score, at most ``max_grasps`` (0 = none).

    A region that cannot be grasped (empty, too few opaque Gaussians, gripper wider than the
    scene) adds its reason to ``note`` instead of failing the request.
    """
    from gsbp_ros.grasps import GraspOptions

    limit = int(values["max_grasps"])
    if limit <= 0 or not selections:
        return NodeGrasps()
    gripper = gripper_in_scene(values, transform)
    out = NodeGrasps(gripper=gripper)
    notes = []
    for sel in selections:
        try:
            grasps = engine.plan_grasps(
                sel, gripper=gripper, options=GraspOptions(max_grasps=limit)
            )
        except GsbpError as exc:
            notes.append(f"no grasps on {sel.name!r}: {exc}")
            continue
        out.sets.append(grasps)
        if grasps.empty:
            notes.append(grasps.message)
    scored = [(-float(gs.scores[i]), s, i) for s, gs in enumerate(out.sets) for i in range(len(gs))]
    out.ranked = [(s, i) for _, s, i in sorted(scored)[:limit]]
    if out.ranked:
        notes.insert(0, f"{len(out.ranked)} grasps")
    out.note = "; ".join(notes)
    return out


def _quaternion(m: np.ndarray) -> Quaternion:
    from gsbp_ros.regions import rotmat_to_quat

    w, x, y, z = rotmat_to_quat(m)[0]
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def _pose(position: np.ndarray, rotation: np.ndarray) -> Pose:
    p = Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
    return Pose(position=p, orientation=_quaternion(rotation))


def grasp_messages(result: NodeGrasps, transform: SceneToFrame) -> list:
    """``gsbp_ros/Grasp`` messages of the ranked grasps, poses and widths in ``frame_id``."""
    from gsbp_ros.msg import Grasp

    msgs = []
    for s, i in result.ranked:
        gs = result.sets[s]
        msgs.append(
            Grasp(
                pose=_pose(
                    transform.points(gs.positions[i]),
                    transform.rotation_to_frame(gs.rotations[i]),
                ),
                width=float(transform.lengths(gs.widths[i])),
                score=float(gs.scores[i]),
                region=gs.name,
            )
        )
    return msgs


def grasp_pose_array(grasps: Sequence, header: Header) -> PoseArray:
    """PoseArray of ``gsbp_ros/Grasp`` messages (best first) for ``~/grasp_poses``."""
    return PoseArray(header=header, poses=[g.pose for g in grasps])


def gripper_markers(result: NodeGrasps, transform: SceneToFrame, header: Header) -> list[Marker]:
    """Per ranked grasp, three CUBE markers (the two fingers and the palm, ids 3i..3i+2) in
    namespace :data:`GRASP_MARKER_NS`; the best one green and opaque, the others blue."""
    out = []
    for rank, (s, i) in enumerate(result.ranked):
        gs = result.sets[s]
        rot = gs.rotations[i]
        orientation = _quaternion(transform.rotation_to_frame(rot))
        color = BEST_COLOR if rank == 0 else OTHER_COLOR
        for b, (centre, half) in enumerate(result.gripper.boxes(gs.widths[i])):
            m = Marker(header=header, ns=GRASP_MARKER_NS, id=3 * rank + b)
            m.type, m.action = Marker.CUBE, Marker.ADD
            world = gs.positions[i] + rot @ centre
            m.pose = _pose(transform.points(world), np.eye(3))
            m.pose.orientation = orientation
            size = transform.lengths(2.0 * np.asarray(half))
            m.scale = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
            m.color = ColorRGBA(r=color[0], g=color[1], b=color[2], a=color[3])
            out.append(m)
    return out


__all__ = [
    "GRASP_MARKER_NS",
    "GRASP_PARAMETERS",
    "NodeGrasps",
    "grasp_messages",
    "grasp_pose_array",
    "gripper_in_scene",
    "gripper_markers",
    "plan_node_grasps",
    "read_grasp_parameters",
]
