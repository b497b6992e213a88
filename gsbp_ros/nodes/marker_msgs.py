"""visualization_msgs/MarkerArray of regions: points, oriented box, approach arrow, label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Pose, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from gsbp_ros.nodes.frame_msgs import pose_to_matrix, to_point
from gsbp_ros.nodes.region_msgs import RegionGeometry, color_for


def _rgba(c: Sequence[int], a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=c[0] / 255.0, g=c[1] / 255.0, b=c[2] / 255.0, a=float(a))


def box_edges(pose: Pose, size: Vector3) -> np.ndarray:
    """[24, 3] endpoints of the 12 edges of an oriented box (a LINE_LIST)."""
    m = pose_to_matrix(pose)
    half = np.array([size.x, size.y, size.z]) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners = (signs * half) @ m[:3, :3].T + m[:3, 3]
    edges = []
    for i in range(8):
        for j in range(i + 1, 8):
            if np.sum(signs[i] != signs[j]) == 1:
                edges += [corners[i], corners[j]]
    return np.asarray(edges)


def region_markers(
    regions: Sequence[RegionGeometry],
    header: Header,
    *,
    point_size: float = 0.01,
    max_points: int = 20000,
) -> MarkerArray:
    """DELETEALL, then per region (namespace = region name): POINTS (id 0), the oriented
    box as LINE_LIST (id 1), an ARROW along the approach direction ending at the centroid
    (id 2, when the region has one), a TEXT_VIEW_FACING label (id 3)."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for r in regions:
        if r.indices.size == 0:
            continue
        color = color_for(r.label)
        s = r.summary

        def base(mid: int, mtype: int, r=r) -> Marker:
            m = Marker()
            m.header = header
            m.ns = r.name
            m.id = mid
            m.type = mtype
            m.action = Marker.ADD
            m.pose.orientation.w = 1.0
            m.frame_locked = False
            return m

        pts = base(0, Marker.POINTS)
        step = max(1, int(np.ceil(r.points.shape[0] / max_points)))
        pts.points = [to_point(p) for p in r.points[::step]]
        pts.scale.x = pts.scale.y = float(point_size)
        pts.color = _rgba(color, 0.9)
        out.markers.append(pts)

        box = base(1, Marker.LINE_LIST)
        box.points = [to_point(p) for p in box_edges(s.obb_pose, s.obb_size)]
        box.scale.x = float(point_size) * 0.5
        box.color = _rgba(color)
        out.markers.append(box)

        c = np.array([s.centroid.x, s.centroid.y, s.centroid.z])
        diag = float(np.linalg.norm([s.obb_size.x, s.obb_size.y, s.obb_size.z]))
        length = max(diag, 10 * point_size)
        if s.has_approach:
            a = np.array([s.approach.x, s.approach.y, s.approach.z])
            arrow = base(2, Marker.ARROW)
            arrow.points = [to_point(c - length * a), to_point(c)]
            arrow.scale.x = float(point_size)  # shaft diameter
            arrow.scale.y = float(point_size) * 2  # head diameter
            arrow.scale.z = float(point_size) * 3  # head length
            arrow.color = _rgba(color)
            out.markers.append(arrow)

        text = base(3, Marker.TEXT_VIEW_FACING)
        text.pose.position = to_point([c[0], c[1], s.aabb_max.z + 2 * point_size])
        text.scale.z = max(3 * point_size, 0.02)
        text.color = _rgba((255, 255, 255))
        text.text = f"{r.name} ({r.indices.size})"
        out.markers.append(text)
    return out
