"""Results -> messages: Selection / Labelling / RegionSummary (scene frame) -> ``gsbp_ros.msg``
Region and RegionSummary and their clouds (node frame); the label colour palette."""

from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from gsbp_ros.nodes.cloud_msgs import make_cloud
from gsbp_ros.nodes.frame_msgs import SceneToFrame, matrix_to_pose, to_point, to_vector3
from gsbp_ros.results import Selection


def color_for(i: int) -> tuple[int, int, int]:
    """Fixed RGB (0..255) of label index ``i``: gsbp_ros.overlay's palette, the one shared
    with the CLI's overlays."""
    from gsbp_ros.overlay import color_for as overlay_color  # imports torch: only when used

    return tuple(round(v * 255) for v in overlay_color(i))


def summary_to_msg(summary, count: int, transform: SceneToFrame, points_frame=None):
    """:class:`gsbp_ros.results.RegionSummary` (scene frame) -> ``RegionSummary`` msg (frame).

    The oriented box, axis and approach are transformed; the axis-aligned box is recomputed
    from ``points_frame`` ([M, 3] region points in the frame) when given, else it bounds the
    transformed corners of the scene AABB. ``summary=None`` (empty region) -> zeros, count 0.
    """
    from gsbp_ros.msg import RegionSummary as RegionSummaryMsg

    msg = RegionSummaryMsg()
    msg.count = int(count)
    msg.obb_pose.orientation.w = 1.0
    if summary is None:
        return msg
    msg.centroid = to_point(transform.points(summary.centroid))
    if points_frame is not None and len(points_frame):
        pts = np.asarray(points_frame, dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    else:
        corners = np.array(
            [
                [
                    (summary.aabb_max if i & 1 else summary.aabb_min)[0],
                    (summary.aabb_max if i & 2 else summary.aabb_min)[1],
                    (summary.aabb_max if i & 4 else summary.aabb_min)[2],
                ]
                for i in range(8)
            ]
        )
        c = transform.points(corners)
        lo, hi = c.min(axis=0), c.max(axis=0)
    msg.aabb_min, msg.aabb_max = to_point(lo), to_point(hi)
    axes = np.asarray(summary.obb_axes, dtype=np.float64).T  # columns = box axes
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    m = np.eye(4)
    m[:3, :3] = transform.rotation_to_frame(axes)
    m[:3, 3] = transform.points(summary.obb_center)
    msg.obb_pose = matrix_to_pose(m)
    msg.obb_size = to_vector3(transform.lengths(summary.obb_extent))
    msg.principal_axis = to_vector3(transform.vectors(summary.principal_axis))
    if summary.approach is not None:
        msg.approach = to_vector3(transform.vectors(summary.approach))
        msg.has_approach = True
    return msg


@dataclass
class RegionGeometry:
    """One region in the node's frame, ready for messages: what every output needs."""

    name: str
    indices: np.ndarray  # [M] int64 scene indices
    scores: np.ndarray  # [M] float32
    points: np.ndarray  # [M, 3] in frame
    colors: np.ndarray  # [M, 3] uint8 scene colours
    summary: object  # RegionSummary msg (in frame)
    label: int = 0


def region_geometry(
    selection, means_scene: np.ndarray, colors: np.ndarray, transform: SceneToFrame, label=0
) -> RegionGeometry:
    """A :class:`gsbp_ros.results.Selection` (scene frame) -> :class:`RegionGeometry`."""
    idx = np.asarray(selection.indices, dtype=np.int64).reshape(-1)
    pts = transform.points(means_scene[idx]) if idx.size else np.zeros((0, 3))
    summary = summary_to_msg(selection.summary if idx.size else None, idx.size, transform, pts)
    return RegionGeometry(
        name=selection.name,
        indices=idx,
        scores=np.asarray(selection.scores, dtype=np.float32).reshape(-1),
        points=pts,
        colors=colors[idx] if idx.size else np.zeros((0, 3), np.uint8),
        summary=summary,
        label=label,
    )


def region_cloud(region: RegionGeometry, header: Header) -> PointCloud2:
    """x y z rgb score label cloud of one region."""
    return make_cloud(
        region.points,
        rgb=region.colors,
        fields={"score": region.scores, "label": np.full(region.indices.size, region.label)},
        header=header,
    )


def uint32_array(values: np.ndarray) -> array.array:
    a = array.array("I")
    a.frombytes(np.ascontiguousarray(values, dtype=np.uint32).tobytes())
    return a


def float32_array(values: np.ndarray) -> array.array:
    a = array.array("f")
    a.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return a


def region_to_msg(region: RegionGeometry, header: Header):
    """:class:`RegionGeometry` -> ``gsbp_ros/Region``."""
    from gsbp_ros.msg import Region

    msg = Region()
    msg.header = header
    msg.name = region.name
    msg.indices = uint32_array(region.indices)
    msg.scores = float32_array(region.scores)
    msg.cloud = region_cloud(region, header)
    msg.summary = region.summary
    return msg


def labelling_regions(
    labelling, means_scene: np.ndarray, colors: np.ndarray, transform: SceneToFrame
) -> list[RegionGeometry]:
    """:class:`gsbp_ros.results.Labelling` -> one :class:`RegionGeometry` per label name, in
    the order of ``labelling.label_names`` (``label`` = its index; empty when nothing took it)."""
    by_name = {r.name: r for r in labelling.regions}
    none = np.zeros(0, np.int64), np.zeros(0, np.float32)
    return [
        region_geometry(
            by_name.get(name, Selection(name, *none)), means_scene, colors, transform, i
        )
        for i, name in enumerate(labelling.label_names)
    ]


def labelling_cloud(
    labelling, means_scene: np.ndarray, transform: SceneToFrame, header: Header
) -> PointCloud2:
    """x y z rgb score label cloud of every labelled Gaussian of a
    :class:`gsbp_ros.results.Labelling`; rgb = :func:`color_for` of the label index."""
    idx = np.flatnonzero(labelling.labels >= 0)
    lab = labelling.labels[idx]
    palette = np.array([color_for(i) for i in range(len(labelling.label_names))], np.uint8)
    return make_cloud(
        transform.points(means_scene[idx]),
        rgb=palette.reshape(-1, 3)[lab],
        fields={"score": labelling.confidence[idx], "label": lab},
        header=header,
    )
