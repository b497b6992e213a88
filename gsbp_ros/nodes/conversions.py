"""Conversions between ROS 2 messages and the core's numpy / torch types.

Pure functions (numpy + message classes, no node, no rclpy executor): unit-tested alone.

- :class:`SceneToFrame`: the similarity transform from the scene's world frame to the node's
  ``frame_id`` (``p_frame = s * R @ p_scene + t``), for points, directions, rotations, poses.
- PointCloud2: :func:`make_cloud` (x y z, packed ``rgb`` as RViz expects, extra float32
  fields) and :func:`read_points` (any field order, offsets, padding, endianness, row_step).
- sensor_msgs/Image: :func:`image_to_numpy`, :func:`image_to_rgb`, :func:`image_to_mask`
  with encoding / step / size checks, and :func:`numpy_to_image`.
- CameraInfo + Pose <-> :class:`gsbp_ros.camera.Camera`.
- Selection / Labelling / RegionSummary -> ``gsbp_ros.msg`` messages and clouds; MarkerArray
  for regions.

Bad message content raises :class:`MessageError` (a :class:`gsbp_ros.errors.QueryError`),
which the node turns into ``success=false`` and the message.
"""

from __future__ import annotations

import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from gsbp_ros.errors import QueryError
from gsbp_ros.results import Selection

# -- errors ---------------------------------------------------------------------------------


class MessageError(QueryError):
    """A request message is malformed (encoding, size, step, frame, ...)."""


# -- scene-to-frame similarity transform ----------------------------------------------------


def quaternion_to_matrix(xyzw: Sequence[float]) -> np.ndarray:
    """[3, 3] rotation of a quaternion (x, y, z, w); need not be unit length (not zero)."""
    q = np.asarray(xyzw, dtype=np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if not np.isfinite(q).all() or n < 1e-12:
        raise MessageError(f"quaternion {q.tolist()} is zero or not finite")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a [3, 3] rotation matrix (w >= 0)."""
    m = np.asarray(m, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


@dataclass(frozen=True)
class SceneToFrame:
    """Similarity transform scene world -> ``frame_id``: ``p_f = scale * R @ p_s + t``.

    Attributes:
        scale: positive uniform scale.
        rotation: [3, 3] rotation matrix R.
        translation: [3] translation t.
    """

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def from_params(
        cls, translation: Sequence[float], rotation_xyzw: Sequence[float], scale: float
    ) -> SceneToFrame:
        t = np.asarray(translation, dtype=np.float64)
        if t.shape != (3,) or not np.isfinite(t).all():
            raise MessageError(f"scene_to_frame.translation must be 3 finite numbers, got {t}")
        if len(rotation_xyzw) != 4:
            raise MessageError(
                f"scene_to_frame.rotation must be a quaternion [x, y, z, w], got {rotation_xyzw}"
            )
        if not (np.isfinite(scale) and scale > 0):
            raise MessageError(f"scene_to_frame.scale must be positive, got {scale}")
        return cls(float(scale), quaternion_to_matrix(rotation_xyzw), t)

    @property
    def is_identity(self) -> bool:
        return (
            self.scale == 1.0
            and np.array_equal(self.rotation, np.eye(3))
            and not np.any(self.translation)
        )

    def points(self, p: np.ndarray) -> np.ndarray:
        """[..., 3] scene points -> frame points (float64)."""
        p = np.asarray(p, dtype=np.float64)
        return self.scale * p @ self.rotation.T + self.translation

    def inverse_points(self, p: np.ndarray) -> np.ndarray:
        """[..., 3] frame points -> scene points (float64)."""
        p = np.asarray(p, dtype=np.float64)
        return (p - self.translation) @ self.rotation / self.scale

    def vectors(self, v: np.ndarray) -> np.ndarray:
        """[..., 3] scene directions -> frame directions (rotation only; lengths kept)."""
        return np.asarray(v, dtype=np.float64) @ self.rotation.T

    def lengths(self, x: np.ndarray | float) -> np.ndarray:
        """Scene lengths -> frame lengths."""
        return np.asarray(x, dtype=np.float64) * self.scale

    def rotation_to_frame(self, r_scene: np.ndarray) -> np.ndarray:
        """[3, 3] orientation (columns = axes) in the scene -> in the frame."""
        return self.rotation @ np.asarray(r_scene, dtype=np.float64)

    def rotation_to_scene(self, r_frame: np.ndarray) -> np.ndarray:
        return self.rotation.T @ np.asarray(r_frame, dtype=np.float64)


# -- small geometry_msgs helpers ------------------------------------------------------------


def to_point(p: Sequence[float]) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def to_vector3(v: Sequence[float]) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def points_to_numpy(points: Sequence[Point]) -> np.ndarray:
    """geometry_msgs/Point[] -> [P, 3] float64."""
    arr = np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(arr).all():
        raise MessageError("points contain NaN or Inf")
    return arr


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """[4, 4] transform of a geometry_msgs/Pose (child -> parent)."""
    o = pose.orientation
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix([o.x, o.y, o.z, o.w])
    m[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    if not np.isfinite(m).all():
        raise MessageError("pose contains NaN or Inf")
    return m


def matrix_to_pose(m: np.ndarray) -> Pose:
    q = matrix_to_quaternion(m[:3, :3])
    return Pose(
        position=to_point(m[:3, 3]),
        orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )


# -- PointCloud2 ----------------------------------------------------------------------------

_FIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] uint8 -> [N] float32 whose bits are 0x00RRGGBB (the ``rgb`` field of RViz/PCL)."""
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).astype("<u4")
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """[N] packed ``rgb`` (float32 bits, or uint32, any byte order) -> [N, 3] uint8."""
    packed = np.asarray(packed)
    if packed.dtype.itemsize != 4:
        raise MessageError(f"packed rgb must be 4 bytes per point, got {packed.dtype}")
    u = packed.view(np.dtype("u4").newbyteorder(packed.dtype.byteorder)).astype(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def make_cloud(
    xyz: np.ndarray,
    *,
    rgb: np.ndarray | None = None,
    fields: Mapping[str, np.ndarray] | None = None,
    header: Header | None = None,
) -> PointCloud2:
    """An unorganised PointCloud2 (height 1) with float32 fields x y z [rgb] [fields...].

    Args:
        xyz: [N, 3] points.
        rgb: [N, 3] uint8 colours, packed into a float32 field ``rgb``.
        fields: extra per-point values, each [N], stored as float32 (e.g. score, label).
        header: frame and stamp.
    """
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    n = xyz.shape[0]
    columns: list[tuple[str, np.ndarray]] = [("x", xyz[:, 0]), ("y", xyz[:, 1]), ("z", xyz[:, 2])]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise ValueError(f"rgb must be [{n}, 3], got {list(rgb.shape)}")
        columns.append(("rgb", pack_rgb(rgb)))
    for name, values in (fields or {}).items():
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"field {name!r} has {values.shape[0]} values for {n} points")
        columns.append((name, values))
    # Every field is 4 bytes: fill a [N, F] little-endian uint32 table bit by bit (the packed
    # colours are bit patterns, not numbers, and must not pass through a float conversion).
    table = np.empty((n, len(columns)), dtype="<u4")
    for i, (_, values) in enumerate(columns):
        table[:, i] = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height = 1
    msg.width = n
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, (name, _) in enumerate(columns)
    ]
    msg.is_bigendian = False
    msg.point_step = 4 * len(columns)
    msg.row_step = msg.point_step * n
    msg.is_dense = bool(np.isfinite(xyz).all())
    buf = array.array("B")
    buf.frombytes(table.tobytes())
    msg.data = buf
    return msg


def cloud_dtype(msg: PointCloud2) -> np.dtype:
    """The numpy structured dtype of one point of ``msg`` (offsets, padding, endianness)."""
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for f in msg.fields:
        if f.datatype not in _FIELD_DTYPES:
            raise MessageError(f"PointCloud2 field {f.name!r} has unknown datatype {f.datatype}")
        base = _FIELD_DTYPES[f.datatype].newbyteorder(order)
        count = max(1, int(f.count))
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets})
    if dt.itemsize > msg.point_step:
        raise MessageError(
            f"PointCloud2 fields need {dt.itemsize} bytes but point_step is {msg.point_step}"
        )
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step}
    )


def read_points(msg: PointCloud2) -> np.ndarray:
    """All points of a PointCloud2 as a [height * width] structured array (row-major).

    Honours ``point_step``, field offsets and counts, ``is_bigendian`` and row padding
    (``row_step`` > ``width * point_step``). Field values keep their stored types.
    """
    dt = cloud_dtype(msg)
    h, w = int(msg.height), int(msg.width)
    row = w * msg.point_step
    if msg.row_step < row:
        raise MessageError(f"PointCloud2 row_step {msg.row_step} < width * point_step {row}")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if h == 0 or w == 0:
        return np.zeros(0, dtype=dt)
    if raw.size < msg.row_step * (h - 1) + row:  # the last row's padding may be missing
        raise MessageError(
            f"PointCloud2 has {raw.size} data bytes, expected {msg.row_step * h} "
            f"({h} rows of {msg.row_step})"
        )
    rows = [raw[r * msg.row_step : r * msg.row_step + row] for r in range(h)]
    body = rows[0] if h == 1 else np.concatenate(rows)
    return np.frombuffer(body.tobytes(), dtype=dt)


def cloud_xyz(msg: PointCloud2) -> np.ndarray:
    """[N, 3] float64 x y z of a PointCloud2."""
    pts = read_points(msg)
    return np.stack([pts["x"], pts["y"], pts["z"]], axis=-1).astype(np.float64)


# -- Image ----------------------------------------------------------------------------------

# encoding -> (dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
MASK_ENCODINGS = ("mono8", "mono16", "8UC1", "16UC1")


def image_to_numpy(msg: Image, what: str = "image") -> np.ndarray:
    """sensor_msgs/Image -> [H, W, C] (C > 1) or [H, W] array of the encoding's dtype.

    Checks the encoding, that ``step`` holds a row (``step >= width * bytes per pixel``; the
    padding beyond is dropped) and that ``data`` holds ``step * height`` bytes.
    """
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise MessageError(
            f"{what}: unsupported encoding {enc!r} (supported: {', '.join(IMAGE_ENCODINGS)})"
        )
    dtype, channels = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageError(f"{what}: empty image ({w}x{h})")
    row = w * channels * dtype.itemsize
    if step < row:
        raise MessageError(
            f"{what}: step {step} is smaller than width * bytes per pixel = {w} * "
            f"{channels * dtype.itemsize} = {row} ({enc})"
        )
    if step % dtype.itemsize:
        raise MessageError(f"{what}: step {step} is not a multiple of {dtype.itemsize} ({enc})")
    n = len(msg.data)
    if n != step * h:
        raise MessageError(
            f"{what}: data has {n} bytes, expected step * height = {step} * {h} = {step * h}"
        )
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :row]
    order = ">" if msg.is_bigendian else "<"
    arr = np.ascontiguousarray(raw).view(dtype.newbyteorder(order)).astype(dtype)
    return arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)


def image_to_rgb(msg: Image, what: str = "image") -> np.ndarray:
    """A colour Image (rgb8, bgr8, rgba8, bgra8) -> [H, W, 3] uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise MessageError(
            f"{what}: encoding {msg.encoding!r} is not a colour encoding "
            f"(expected one of {', '.join(COLOR_ENCODINGS)})"
        )
    arr = image_to_numpy(msg, what)
    if msg.encoding.startswith("bgr"):
        arr = arr[..., [2, 1, 0]]
    return np.ascontiguousarray(arr[..., :3])


def image_to_mask(msg: Image, what: str = "mask") -> np.ndarray:
    """A label mask Image (mono8 / mono16, also 8UC1 / 16UC1) -> [H, W] int64."""
    if msg.encoding not in MASK_ENCODINGS:
        raise MessageError(
            f"{what}: encoding {msg.encoding!r} is not a mask encoding "
            f"(expected one of {', '.join(MASK_ENCODINGS)})"
        )
    return image_to_numpy(msg, what).astype(np.int64)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """[H, W, C] / [H, W] array -> sensor_msgs/Image (little endian, no padding)."""
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported encoding {encoding!r}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise MessageError(f"{encoding} needs {channels} channels, got shape {list(arr.shape)}")
    h, w = arr.shape[:2]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0
    msg.step = w * channels * dtype.itemsize
    buf = array.array("B")
    buf.frombytes(np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes())
    msg.data = buf
    return msg


# -- cameras --------------------------------------------------------------------------------


def camera_from_info_pose(
    info: CameraInfo, pose: Pose, transform: SceneToFrame, name: str = "source"
):
    """CameraInfo (intrinsics, size) + camera pose in the node's frame -> scene Camera.

    ``pose`` is the optical frame's pose (x right, y down, z forward) in ``frame_id``. The
    returned camera's ``world_to_cam`` maps *scene* points into that optical frame (up to the
    similarity's scale, which projection ignores). Distortion is ignored.
    """
    from gsbp_ros.camera import Camera

    if info.width <= 0 or info.height <= 0:
        raise MessageError(f"{name}: camera info has an empty size {info.width}x{info.height}")
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] == 0:
        raise MessageError(f"{name}: camera info k[] is not a valid intrinsic matrix: {k.ravel()}")
    k = k / k[2, 2]
    cam_to_frame = pose_to_matrix(pose)
    r_cs = transform.rotation_to_scene(cam_to_frame[:3, :3])
    c_s = transform.inverse_points(cam_to_frame[:3, 3])
    w2c = np.eye(4)
    w2c[:3, :3] = r_cs.T
    w2c[:3, 3] = -r_cs.T @ c_s
    return Camera(name=name, K=k, world_to_cam=w2c, width=int(info.width), height=int(info.height))


def camera_to_info_pose(camera, transform: SceneToFrame, header: Header | None = None):
    """Scene Camera -> (CameraInfo, Pose in the node's frame): the inverse of the above."""
    c2w = np.linalg.inv(np.asarray(camera.world_to_cam, dtype=np.float64))
    m = np.eye(4)
    m[:3, :3] = transform.rotation_to_frame(c2w[:3, :3])
    m[:3, 3] = transform.points(c2w[:3, 3])
    info = CameraInfo()
    if header is not None:
        info.header = header
    info.width, info.height = int(camera.width), int(camera.height)
    k = np.asarray(camera.K, dtype=np.float64)
    info.k = k.ravel().tolist()
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.r = np.eye(3).ravel().tolist()
    p = np.zeros((3, 4))
    p[:3, :3] = k
    info.p = p.ravel().tolist()
    return info, matrix_to_pose(m)


# -- results -> messages --------------------------------------------------------------------


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


# -- markers --------------------------------------------------------------------------------


def color_for(i: int) -> tuple[int, int, int]:
    """Fixed RGB (0..255) of label index ``i``: gsbp_ros.overlay's palette, the one shared
    with the CLI's overlays."""
    from gsbp_ros.overlay import color_for as overlay_color  # imports torch: only when used

    return tuple(round(v * 255) for v in overlay_color(i))


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


__all__ = [
    "MessageError",
    "RegionGeometry",
    "SceneToFrame",
    "camera_from_info_pose",
    "camera_to_info_pose",
    "cloud_xyz",
    "color_for",
    "image_to_mask",
    "image_to_numpy",
    "image_to_rgb",
    "labelling_cloud",
    "labelling_regions",
    "make_cloud",
    "numpy_to_image",
    "read_points",
    "region_geometry",
    "region_markers",
    "region_to_msg",
    "summary_to_msg",
]
