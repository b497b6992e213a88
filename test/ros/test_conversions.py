"""Unit tests of gsbp_ros.nodes.conversions: pure numpy + message types, no DDS."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message wheels are not installed")

from geometry_msgs.msg import Pose
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from gsbp_ros.errors import GsbpError
from gsbp_ros.nodes import conversions as C
from gsbp_ros.results import RegionSummary, Selection

RNG = np.random.default_rng(0)


def _rot_z(deg: float) -> list[float]:
    h = np.radians(deg) / 2
    return [0.0, 0.0, float(np.sin(h)), float(np.cos(h))]


T = C.SceneToFrame.from_params([1.0, -2.0, 0.5], _rot_z(90), 2.0)


# -- transform -------------------------------------------------------------------------------


def test_scene_to_frame_known_values_and_inverse():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    # 90 deg about z maps x -> y, y -> -x; then x2, then + t.
    expected = np.array([[1.0, 0.0, 0.5], [-1.0, -2.0, 4.5]])
    np.testing.assert_allclose(T.points(p), expected, atol=1e-12)
    np.testing.assert_allclose(T.inverse_points(T.points(p)), p, atol=1e-12)
    np.testing.assert_allclose(T.vectors([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T.lengths([1.0, 2.0, 3.0]), [2.0, 4.0, 6.0])
    assert C.SceneToFrame().is_identity and not T.is_identity


def test_scene_to_frame_rejects_bad_params():
    with pytest.raises(GsbpError, match="scale"):
        C.SceneToFrame.from_params([0, 0, 0], [0, 0, 0, 1], 0.0)
    with pytest.raises(GsbpError, match="quaternion"):
        C.SceneToFrame.from_params([0, 0, 0], [0, 0, 0, 0], 1.0)
    with pytest.raises(GsbpError, match="translation"):
        C.SceneToFrame.from_params([0, 0], [0, 0, 0, 1], 1.0)


def test_quaternion_matrix_round_trip():
    for _ in range(20):
        q = RNG.normal(size=4)
        q /= np.linalg.norm(q)
        m = C.quaternion_to_matrix(q)
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(m) == pytest.approx(1.0)
        q2 = C.matrix_to_quaternion(m)
        np.testing.assert_allclose(q2, q if q[3] >= 0 else -q, atol=1e-9)


# -- PointCloud2 -------------------------------------------------------------------------------


def test_cloud_round_trip_xyz_rgb_fields():
    n = 257
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, size=(n, 3)).astype(np.uint8)
    score = RNG.random(n).astype(np.float32)
    label = RNG.integers(0, 5, n)
    msg = C.make_cloud(
        xyz, rgb=rgb, fields={"score": score, "label": label}, header=Header(frame_id="map")
    )
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "score", "label"]
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in msg.fields)
    assert msg.point_step == 24 and msg.row_step == 24 * n and msg.height == 1
    assert msg.width == n and len(msg.data) == 24 * n and msg.is_dense
    pts = C.read_points(msg)
    np.testing.assert_array_equal(np.stack([pts["x"], pts["y"], pts["z"]], -1), xyz)
    np.testing.assert_array_equal(C.unpack_rgb(pts["rgb"]), rgb)
    np.testing.assert_array_equal(pts["score"], score)
    np.testing.assert_array_equal(pts["label"], label.astype(np.float32))
    np.testing.assert_allclose(C.cloud_xyz(msg), xyz)
    # RViz reads rgb as the float32 whose bits are 0x00RRGGBB.
    bits = struct.unpack_from("<I", bytes(msg.data), 12)[0]
    assert bits == (int(rgb[0, 0]) << 16) | (int(rgb[0, 1]) << 8) | int(rgb[0, 2])


def test_cloud_empty():
    msg = C.make_cloud(np.zeros((0, 3)), rgb=np.zeros((0, 3), np.uint8))
    assert msg.width == 0 and len(msg.data) == 0
    assert C.read_points(msg).shape == (0,)


@pytest.mark.parametrize("bigendian", [False, True])
def test_read_points_hand_built_cloud_with_padding(bigendian):
    """2 rows x 3 points; fields out of order, an 8-byte float64 field, a uint16 pair
    (count 2), a uint8, padding between fields, after the point and after each row."""
    e = ">" if bigendian else "<"
    fields = [
        PointField(name="intensity", offset=0, datatype=PointField.FLOAT64, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
        PointField(name="ring", offset=12, datatype=PointField.UINT16, count=2),
        PointField(name="x", offset=20, datatype=PointField.FLOAT32, count=1),
        PointField(name="flag", offset=24, datatype=PointField.UINT8, count=1),
        PointField(name="y", offset=28, datatype=PointField.FLOAT32, count=1),
    ]
    point_step, width, height = 36, 3, 2
    row_step = width * point_step + 8
    data = bytearray(row_step * height)
    values = {}
    for r in range(height):
        for c in range(width):
            i = r * width + c
            base = r * row_step + c * point_step
            v = (0.5 * i, 10.0 + i, (i, 100 + i), -1.0 - i, i % 2, 2.0 * i)
            values[i] = v
            struct.pack_into(e + "d", data, base + 0, v[0])
            struct.pack_into(e + "f", data, base + 8, v[1])
            struct.pack_into(e + "HH", data, base + 12, *v[2])
            struct.pack_into(e + "f", data, base + 20, v[3])
            struct.pack_into(e + "B", data, base + 24, v[4])
            struct.pack_into(e + "f", data, base + 28, v[5])
    msg = PointCloud2(
        height=height,
        width=width,
        fields=fields,
        is_bigendian=bigendian,
        point_step=point_step,
        row_step=row_step,
        data=bytes(data),
        is_dense=True,
    )
    pts = C.read_points(msg)
    assert pts.shape == (6,)
    for i, v in values.items():
        assert pts["intensity"][i] == v[0]
        assert pts["z"][i] == v[1]
        assert tuple(pts["ring"][i]) == v[2]
        assert pts["x"][i] == v[3] and pts["y"][i] == v[5]
        assert pts["flag"][i] == v[4]
    np.testing.assert_allclose(C.cloud_xyz(msg)[4], [values[4][3], values[4][5], values[4][1]])


def test_read_points_errors():
    msg = C.make_cloud(np.zeros((4, 3)))
    msg.point_step = 8  # fields need 12 bytes
    with pytest.raises(GsbpError, match="point_step"):
        C.read_points(msg)
    msg = C.make_cloud(np.zeros((4, 3)))
    msg.data = bytes(len(msg.data) - 5)
    with pytest.raises(GsbpError, match="data bytes"):
        C.read_points(msg)


# -- Image -------------------------------------------------------------------------------------


def _image(arr: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False) -> Image:
    h, w = arr.shape[:2]
    dt = arr.dtype.newbyteorder(">" if bigendian else "<")
    rows = np.ascontiguousarray(arr.astype(dt)).reshape(h, -1).view(np.uint8)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=padded.tobytes(),
    )


def test_image_colour_encodings():
    rgb = RNG.integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    alpha = np.full((5, 7, 1), 200, np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], -1),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], -1),
    }
    for enc, arr in cases.items():
        for pad in (0, 3):
            out = C.image_to_rgb(_image(arr, enc, pad=pad), "img")
            assert out.dtype == np.uint8 and out.shape == (5, 7, 3), enc
            np.testing.assert_array_equal(out, rgb, err_msg=f"{enc} pad {pad}")


@pytest.mark.parametrize("bigendian", [False, True])
def test_image_masks_mono8_mono16(bigendian):
    m8 = RNG.integers(0, 4, size=(6, 9)).astype(np.uint8)
    np.testing.assert_array_equal(C.image_to_mask(_image(m8, "mono8", pad=7)), m8)
    m16 = RNG.integers(0, 600, size=(6, 9)).astype(np.uint16)
    out = C.image_to_mask(_image(m16, "mono16", pad=2, bigendian=bigendian))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, m16)


def test_numpy_to_image_round_trip():
    rgb = RNG.integers(0, 256, size=(4, 3, 3)).astype(np.uint8)
    msg = C.numpy_to_image(rgb, "rgb8")
    assert msg.step == 9 and len(msg.data) == 36
    np.testing.assert_array_equal(C.image_to_rgb(msg), rgb)
    m = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    np.testing.assert_array_equal(C.image_to_mask(C.numpy_to_image(m, "mono16")), m)


def test_image_errors_are_clear():
    rgb = np.zeros((4, 5, 3), np.uint8)
    bad = _image(rgb, "rgb8")
    bad.encoding = "yuv422"
    with pytest.raises(C.MessageError, match="unsupported encoding 'yuv422'"):
        C.image_to_numpy(bad)
    with pytest.raises(C.MessageError, match="not a colour encoding"):
        C.image_to_rgb(_image(np.zeros((4, 5), np.uint8), "mono8"))
    with pytest.raises(C.MessageError, match="not a mask encoding"):
        C.image_to_mask(_image(rgb, "rgb8"))
    short = _image(rgb, "rgb8")
    short.step = 14  # < 5 * 3
    with pytest.raises(C.MessageError, match="step 14 is smaller than width"):
        C.image_to_rgb(short)
    wrong_len = _image(rgb, "rgb8")
    wrong_len.data = bytes(len(wrong_len.data) - 1)
    with pytest.raises(C.MessageError, match="expected step \\* height"):
        C.image_to_rgb(wrong_len)
    odd = _image(np.zeros((2, 3), np.uint16), "mono16", pad=1)
    with pytest.raises(C.MessageError, match="multiple of 2"):
        C.image_to_mask(odd)
    empty = Image(height=0, width=0, encoding="rgb8", step=0)
    with pytest.raises(C.MessageError, match="empty"):
        C.image_to_rgb(empty)
    assert issubclass(C.MessageError, GsbpError)


# -- cameras -----------------------------------------------------------------------------------


def test_camera_info_pose_round_trip_projects_the_same():
    from gsbp_ros.camera import Camera
    from gsbp_ros.cameras import look_at

    w2c = np.asarray(look_at([0.6, -0.4, 0.5], [0.0, 0.0, 0.05]), dtype=np.float64)
    k = np.array([[200.0, 0, 80.5], [0, 210.0, 60.25], [0, 0, 1]])
    cam = Camera("v0.png", K=k, world_to_cam=w2c, width=160, height=120)
    info, pose = C.camera_to_info_pose(cam, T)
    assert (info.width, info.height) == (160, 120)
    back = C.camera_from_info_pose(info, pose, T, name="v0")
    np.testing.assert_allclose(back.K.numpy(), k, atol=1e-5)
    np.testing.assert_allclose(back.world_to_cam.numpy(), w2c, atol=1e-5)

    # The pose is the optical frame in the *frame*: projecting frame points with it equals
    # projecting the scene points with the scene camera.
    p_scene = RNG.normal(scale=0.1, size=(10, 3)) + np.array([0.0, 0.0, 0.05])
    m = C.pose_to_matrix(pose)
    p_cam_frame = (T.points(p_scene) - m[:3, 3]) @ m[:3, :3]
    p_cam_scene = p_scene @ w2c[:3, :3].T + w2c[:3, 3]
    uv_f = p_cam_frame[:, :2] / p_cam_frame[:, 2:]
    uv_s = p_cam_scene[:, :2] / p_cam_scene[:, 2:]
    np.testing.assert_allclose(uv_f, uv_s, atol=1e-6)  # Camera stores float32


def test_camera_info_errors():
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=10, height=10)  # k all zero
    with pytest.raises(C.MessageError, match="intrinsic"):
        C.camera_from_info_pose(info, Pose(), T)
    info = CameraInfo(width=0, height=10, k=[100.0, 0, 5, 0, 100, 5, 0, 0, 1])
    with pytest.raises(C.MessageError, match="empty size"):
        C.camera_from_info_pose(info, Pose(), T)
    info = CameraInfo(width=10, height=10, k=[100.0, 0, 5, 0, 100, 5, 0, 0, 1])
    zero = Pose()
    zero.orientation.w = 0.0
    with pytest.raises(C.MessageError, match="quaternion"):
        C.camera_from_info_pose(info, zero, T)


def test_camera_info_default_pose_is_valid():
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=10, height=10, k=[100.0, 0, 5, 0, 100, 5, 0, 0, 1])
    cam = C.camera_from_info_pose(info, Pose(), C.SceneToFrame())
    np.testing.assert_allclose(cam.world_to_cam.numpy(), np.eye(4), atol=1e-7)


# -- results -> messages, markers -----------------------------------------------------------------


def _summary() -> RegionSummary:
    axes = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    return RegionSummary(
        centroid=np.array([0.1, 0.2, 0.3]),
        aabb_min=np.array([0.0, 0.1, 0.2]),
        aabb_max=np.array([0.2, 0.3, 0.4]),
        obb_center=np.array([0.1, 0.2, 0.3]),
        obb_axes=axes,
        obb_extent=np.array([0.2, 0.1, 0.05]),
        principal_axis=np.array([1.0, 0.0, 0.0]),
        approach=np.array([0.0, 0.0, -1.0]),
    )


@pytest.mark.ros
@pytest.mark.usefixtures("interfaces")  # gsbp_ros.msg from the colcon install
def test_summary_to_msg_transforms_everything():
    s = _summary()
    msg = C.summary_to_msg(s, 7, T)
    assert msg.count == 7 and msg.has_approach
    c = T.points(s.centroid)
    assert [msg.centroid.x, msg.centroid.y, msg.centroid.z] == pytest.approx(c.tolist())
    # principal axis x -> y under the 90 deg rotation; sizes scale by 2.
    v = msg.principal_axis
    assert [v.x, v.y, v.z] == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert [msg.obb_size.x, msg.obb_size.y, msg.obb_size.z] == pytest.approx([0.4, 0.2, 0.1])
    a = msg.approach
    assert [a.x, a.y, a.z] == pytest.approx([0.0, 0.0, -1.0], abs=1e-12)
    q = msg.obb_pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], _rot_z(90), atol=1e-9)
    # AABB of the transformed corners (no points given).
    lo = [msg.aabb_min.x, msg.aabb_min.y, msg.aabb_min.z]
    hi = [msg.aabb_max.x, msg.aabb_max.y, msg.aabb_max.z]
    corners = T.points(np.array([s.aabb_min, s.aabb_max]))
    assert lo == pytest.approx(corners.min(0).tolist())
    assert hi == pytest.approx(corners.max(0).tolist())
    empty = C.summary_to_msg(None, 0, T)
    assert empty.count == 0 and not empty.has_approach and empty.obb_pose.orientation.w == 1


@pytest.mark.ros
@pytest.mark.usefixtures("interfaces")
def test_region_geometry_msg_and_markers():
    means = RNG.normal(size=(50, 3))
    colors = RNG.integers(0, 256, size=(50, 3)).astype(np.uint8)
    idx = np.array([3, 7, 11, 20])
    regions = [
        C.region_geometry(
            Selection("grasp", idx, np.linspace(0.5, 1, 4, dtype=np.float32), _summary()),
            means,
            colors,
            T,
            label=0,
        ),
        C.region_geometry(
            Selection("contain", np.array([1, 2]), np.ones(2, np.float32), _summary()),
            means,
            colors,
            T,
            label=1,
        ),
        C.region_geometry(
            Selection("pour", np.zeros(0, np.int64), np.zeros(0, np.float32)),
            means,
            colors,
            T,
            label=2,
        ),
    ]
    header = Header(frame_id="map")
    msg = C.region_to_msg(regions[0], header)
    assert msg.name == "grasp" and list(msg.indices) == idx.tolist()
    np.testing.assert_allclose(C.cloud_xyz(msg.cloud), T.points(means[idx]), atol=1e-5)
    pts = C.read_points(msg.cloud)
    np.testing.assert_array_equal(C.unpack_rgb(pts["rgb"]), colors[idx])
    assert msg.summary.count == 4
    assert msg.summary.aabb_min.x == pytest.approx(T.points(means[idx]).min(0)[0])
    empty = C.region_to_msg(regions[2], header)
    assert empty.summary.count == 0 and empty.cloud.width == 0

    markers = C.region_markers(regions, header, point_size=0.01).markers
    assert markers[0].action == Marker.DELETEALL
    by_ns: dict[str, dict[int, Marker]] = {}
    for m in markers[1:]:
        by_ns.setdefault(m.ns, {})[m.id] = m
        assert m.header.frame_id == "map" and m.action == Marker.ADD
    assert set(by_ns) == {"grasp", "contain"}  # empty regions get no markers
    g = by_ns["grasp"]
    assert g[0].type == Marker.POINTS and len(g[0].points) == 4
    assert g[1].type == Marker.LINE_LIST and len(g[1].points) == 24
    assert g[2].type == Marker.ARROW and g[3].type == Marker.TEXT_VIEW_FACING
    tip = g[2].points[1]
    s = regions[0].summary
    assert (tip.x, tip.y, tip.z) == pytest.approx((s.centroid.x, s.centroid.y, s.centroid.z))
    tail = g[2].points[0]
    d = np.array([tip.x - tail.x, tip.y - tail.y, tip.z - tail.z])
    np.testing.assert_allclose(d / np.linalg.norm(d), [0, 0, -1], atol=1e-9)
    assert "grasp (4)" in g[3].text
    # Fixed colours per label index: the overlays' palette in 0..255, different per label.
    from gsbp_ros.overlay import PALETTE

    c0 = C.color_for(0)
    assert c0 == tuple(round(v * 255) for v in PALETTE[0]) and c0 != C.color_for(1)
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in c0)
    assert g[0].color.r == pytest.approx(c0[0] / 255)
    # The LINE_LIST is the 12 edges of the oriented box: every edge length is a box side.
    e = np.array([[p.x, p.y, p.z] for p in g[1].points]).reshape(12, 2, 3)
    lengths = np.sort(np.round(np.linalg.norm(e[:, 0] - e[:, 1], axis=1), 6))
    np.testing.assert_allclose(np.unique(lengths), [0.1, 0.2, 0.4], atol=1e-6)


@pytest.mark.ros
@pytest.mark.usefixtures("interfaces")
def test_labelling_regions_and_cloud():
    from gsbp_ros.results import Labelling

    means = RNG.normal(size=(8, 3))
    colors = RNG.integers(0, 256, size=(8, 3)).astype(np.uint8)
    labels = np.array([-1, 1, 1, -1, 1, -1, -1, -1])  # nothing took label 0 ("grasp")
    conf = np.linspace(0, 1, 8, dtype=np.float32)
    contain = Selection("contain", np.array([1, 2, 4]), conf[[1, 2, 4]], _summary())
    labelling = Labelling(["grasp", "contain"], labels, conf, [contain])
    regions = C.labelling_regions(labelling, means, colors, T)
    assert [(r.name, r.label, r.indices.tolist()) for r in regions] == [
        ("grasp", 0, []),
        ("contain", 1, [1, 2, 4]),
    ]
    assert regions[0].summary.count == 0 and regions[1].summary.count == 3

    cloud = C.labelling_cloud(labelling, means, T, Header(frame_id="map"))
    pts = C.read_points(cloud)
    np.testing.assert_allclose(C.cloud_xyz(cloud), T.points(means[[1, 2, 4]]), atol=1e-5)
    np.testing.assert_array_equal(pts["label"], [1, 1, 1])
    np.testing.assert_array_equal(pts["score"], conf[[1, 2, 4]])
    np.testing.assert_array_equal(C.unpack_rgb(pts["rgb"]), [C.color_for(1)] * 3)
    none = Labelling(["grasp"], np.full(8, -1), np.zeros(8, np.float32), [])
    assert C.labelling_cloud(none, means, T, Header()).width == 0
