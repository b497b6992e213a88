"""Camera sets: COLMAP binary/text, transforms.json, orbits, frame transforms, errors."""

from __future__ import annotations

import json
import logging
import math
import struct

import numpy as np
import pytest
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.cameras import (
    cameras_for_scene,
    load_cameras,
    look_at,
    orbit_cameras,
    project,
    quat_to_rotmat,
    rotmat_to_quat,
    save_colmap_binary,
    save_colmap_text,
    save_transforms_json,
    transform_cameras,
    visible_fraction,
)
from gsbp_ros.errors import CameraError
from gsbp_ros.scene import GaussianScene


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def two_cameras() -> list[Camera]:
    """Non-square images, off-centre principal points, different sizes and focal lengths."""
    rng = np.random.default_rng(7)
    cams = []
    for name, (w, h), (fx, fy, cx, cy) in (
        ("b_view.png", (200, 120), (150.5, 149.25, 83.75, 70.5)),
        ("a_view.jpg", (64, 96), (80.0, 81.5, 30.25, 50.0)),
    ):
        w2c = np.eye(4)
        w2c[:3, :3] = random_rotation(rng)
        w2c[:3, 3] = rng.normal(size=3)
        K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        cams.append(Camera(name, torch.tensor(K), torch.from_numpy(w2c), w, h))
    return cams


def assert_same_cameras(got: list[Camera], want: list[Camera], name_prefix: str = "") -> None:
    want = sorted(want, key=lambda c: c.name)
    assert [c.name for c in got] == [name_prefix + c.name for c in want]
    for g, w in zip(got, want):
        assert (g.width, g.height) == (w.width, w.height)
        assert torch.equal(g.K, w.K)
        # the rotation goes through a quaternion: equal up to float32 rounding
        torch.testing.assert_close(g.world_to_cam, w.world_to_cam, rtol=0, atol=1e-6)


def fixed_points() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(50, 3, generator=g, dtype=torch.float64) * 0.5


# -- round trips through the writers ----------------------------------------------------------


@pytest.mark.parametrize("writer", [save_colmap_binary, save_colmap_text])
def test_colmap_round_trip(tmp_path, writer):
    cams = two_cameras()
    writer(cams, tmp_path / "sparse" / "0")
    got = load_cameras(tmp_path / "sparse" / "0")
    assert_same_cameras(got, cams)
    # translations are stored as doubles: exact
    for g, w in zip(got, sorted(cams, key=lambda c: c.name)):
        assert torch.equal(g.world_to_cam[:3, 3], w.world_to_cam[:3, 3])


@pytest.mark.parametrize("sub", ["", "sparse", "sparse/0"])
def test_scene_folder_layouts(tmp_path, sub):
    cams = two_cameras()
    model = tmp_path / sub if sub else tmp_path
    save_colmap_text(cams, model)
    assert_same_cameras(load_cameras(tmp_path), cams)


def test_transforms_json_matches_colmap_by_projection(tmp_path):
    cams = two_cameras()
    save_colmap_binary(cams, tmp_path / "colmap")
    save_transforms_json(cams, tmp_path / "transforms.json")
    from_colmap = load_cameras(tmp_path / "colmap")
    from_json = load_cameras(tmp_path / "transforms.json")
    assert_same_cameras(from_json, cams, name_prefix="images/")
    pts = fixed_points()
    for a, b, orig in zip(from_colmap, from_json, sorted(cams, key=lambda c: c.name)):
        assert a.stem == b.stem
        uv_a, z_a = project(a, pts)
        uv_b, z_b = project(b, pts)
        uv_o, z_o = project(orig, pts)
        torch.testing.assert_close(uv_a, uv_b, rtol=0, atol=1e-4)
        torch.testing.assert_close(uv_a, uv_o, rtol=0, atol=1e-4)
        torch.testing.assert_close(z_a, z_o, rtol=0, atol=1e-6)
        torch.testing.assert_close(z_a, z_b, rtol=0, atol=1e-6)


# -- hand-written files: an independent oracle for the axis conventions ----------------------
# A camera at (0, -2, 0) looking along +y with z up. A world point (0.1, 0, 0.05) is 2 in
# front of it, 0.1 to the right and 0.05 up, so it lands at (cx + fx*0.05, cy - fy*0.025).

FX, FY, CX, CY, W, H = 100.0, 90.0, 61.5, 40.25, 128, 80
POINT = torch.tensor([[0.1, 0.0, 0.05]], dtype=torch.float64)
PIXEL = torch.tensor([[CX + FX * 0.1 / 2, CY - FY * 0.05 / 2]], dtype=torch.float64)


def test_hand_written_transforms_json_opengl_axes(tmp_path):
    c2w_gl = [[1, 0, 0, 0], [0, 0, -1, -2], [0, 1, 0, 0], [0, 0, 0, 1]]  # x right, y up, z back
    meta = {
        "fl_x": FX,
        "fl_y": FY,
        "cx": CX,
        "cy": CY,
        "w": W,
        "h": H,
        "frames": [{"file_path": "./images/f0.png", "transform_matrix": c2w_gl}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    (cam,) = load_cameras(tmp_path)  # a folder holding transforms.json
    assert cam.name == "images/f0.png" and cam.stem == "f0"
    uv, z = project(cam, POINT)
    torch.testing.assert_close(uv, PIXEL)
    torch.testing.assert_close(z, torch.tensor([2.0], dtype=torch.float64))
    torch.testing.assert_close(
        cam.center.double(), torch.tensor([0.0, -2.0, 0.0], dtype=torch.float64)
    )


def test_hand_written_colmap_text_world_to_camera(tmp_path):
    s = math.sqrt(0.5)  # rotation of +90 degrees about x: rows right, down, forward
    (tmp_path / "cameras.txt").write_text(f"# comment\n3 PINHOLE {W} {H} {FX} {FY} {CX} {CY}\n")
    (tmp_path / "images.txt").write_text(
        f"# comment\n\n9 {s} {s} 0 0 0 0 2 3 f0.png\n1.0 2.0 -1 3.0 4.0 5\n"
    )
    (cam,) = load_cameras(tmp_path)
    uv, z = project(cam, POINT)
    torch.testing.assert_close(uv, PIXEL)
    torch.testing.assert_close(z, torch.tensor([2.0], dtype=torch.float64))


def test_look_at_oracle():
    w2c = look_at([0.0, -2.0, 0.0], [0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0])
    cam = Camera(
        "x.png", torch.tensor([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]]), torch.from_numpy(w2c), W, H
    )
    uv, _ = project(cam, POINT)
    torch.testing.assert_close(uv, PIXEL)


def _cameras_bin(models: list[tuple[int, int, int, int, list[float]]]) -> bytes:
    out = [struct.pack("<Q", len(models))]
    for cam_id, model_id, w, h, params in models:
        out.append(struct.pack(f"<iiQQ{len(params)}d", cam_id, model_id, w, h, *params))
    return b"".join(out)


def _images_bin(images: list[tuple[int, list[float], int, str, int]]) -> bytes:
    out = [struct.pack("<Q", len(images))]
    for image_id, qt, cam_id, name, npts in images:
        out.append(struct.pack("<i7di", image_id, *qt, cam_id) + name.encode() + b"\0")
        out.append(struct.pack("<Q", npts))
        for j in range(npts):
            out.append(struct.pack("<ddq", 1.5 * j, 2.5 * j, -1 if j % 2 else j))
    return b"".join(out)


def test_distorted_models_warn_once_per_model_and_use_pinhole_part(tmp_path, caplog):
    (tmp_path / "cameras.bin").write_bytes(
        _cameras_bin(
            [
                (1, 2, 640, 480, [500.0, 320.5, 240.25, 0.1]),  # SIMPLE_RADIAL f cx cy k
                (2, 4, 800, 600, [700.0, 710.0, 401.0, 299.0, 0.1, -0.2, 0.01, 0.02]),  # OPENCV
                (5, 2, 320, 200, [250.0, 160.0, 100.0, -0.3]),  # SIMPLE_RADIAL again
                (7, 0, 100, 50, [90.0, 49.0, 26.0]),  # SIMPLE_PINHOLE: no warning
            ]
        )
    )
    ident = [1.0, 0, 0, 0, 0.5, -0.25, 3.0]
    (tmp_path / "images.bin").write_bytes(
        _images_bin(
            [
                (4, ident, 2, "c.png", 3),
                (2, ident, 1, "a.png", 0),
                (3, ident, 5, "b.png", 5),
                (1, ident, 7, "d.png", 1),
            ]
        )
    )
    with caplog.at_level(logging.WARNING, logger="gsbp_ros.cameras_colmap"):
        cams = load_cameras(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "2 camera(s) use the SIMPLE_RADIAL model" in warnings[1]
    assert "1 camera(s) use the OPENCV model" in warnings[0]
    assert [c.name for c in cams] == ["a.png", "b.png", "c.png", "d.png"]
    by = {c.name: c for c in cams}
    assert torch.equal(
        by["a.png"].K, torch.tensor([[500.0, 0, 320.5], [0, 500.0, 240.25], [0, 0, 1]])
    )
    assert torch.equal(
        by["c.png"].K, torch.tensor([[700.0, 0, 401.0], [0, 710.0, 299.0], [0, 0, 1]])
    )
    assert (by["b.png"].width, by["b.png"].height) == (320, 200)
    assert (by["d.png"].width, by["d.png"].height) == (100, 50)
    assert torch.equal(by["d.png"].world_to_cam[:3, 3], torch.tensor([0.5, -0.25, 3.0]))


# -- quaternions -----------------------------------------------------------------------------


def test_quaternion_round_trip_covers_every_pivot():
    rng = np.random.default_rng(0)
    rots = [random_rotation(rng) for _ in range(20)]
    rots += [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]), np.eye(3)]
    for R in rots:
        q = rotmat_to_quat(R)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(quat_to_rotmat(q), R, atol=1e-12)
    # COLMAP's unit quaternion for a +90 degree turn about z
    np.testing.assert_allclose(
        quat_to_rotmat([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]),
        [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
        atol=1e-15,
    )


# -- generated views -------------------------------------------------------------------------


def test_orbit_cameras_look_at_center():
    center = torch.tensor([0.3, -0.2, 0.1])
    cams = orbit_cameras(
        center, 2.0, num_views=8, width=160, height=120, fov_deg=50, elevations_deg=(20, 45)
    )
    assert [c.name for c in cams] == [f"orbit_{i:03d}.png" for i in range(8)]
    above = center.double() + torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64)
    for i, cam in enumerate(cams):
        assert (cam.width, cam.height) == (160, 120)
        uv, z = project(cam, center[None].double())
        torch.testing.assert_close(
            uv[0], torch.tensor([80.0, 60.0], dtype=torch.float64), rtol=0, atol=1e-4
        )
        assert z[0] == pytest.approx(2.0, abs=1e-5)
        offset = cam.center.double() - center.double()
        assert offset.norm() == pytest.approx(2.0, abs=1e-5)
        elevation = math.degrees(math.asin(offset[2] / offset.norm()))
        assert elevation == pytest.approx((20, 45)[i % 2], abs=1e-3)
        # world up is image up (smaller v), and the image is not mirrored
        uv_up, _ = project(cam, above[None])
        assert uv_up[0, 1] < 60.0 and abs(uv_up[0, 0] - 80.0) < 1e-3
        fx = cam.K[0, 0].item()
        assert fx == pytest.approx(80.0 / math.tan(math.radians(25)), rel=1e-6)
    positions = torch.stack([c.center for c in cams])
    assert torch.cdist(positions, positions).add(torch.eye(8) * 9).min() > 0.1


def _blob_scene() -> GaussianScene:
    g = torch.Generator().manual_seed(0)
    n = 400
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.0, 0.5]) + torch.tensor(
        [5.0, 0, 0]
    )
    return GaussianScene(
        means, torch.ones(n, 4), torch.full((n, 3), -4.0), torch.zeros(n), torch.zeros(n, 1, 3)
    )


def test_cameras_for_scene_frames_the_scene():
    scene = _blob_scene()
    cams = cameras_for_scene(scene, num_views=6, width=96, height=64)
    assert len(cams) == 6
    for cam in cams:
        uv, z = project(cam, scene.means.double())
        assert (z > 0).all()
        assert (uv[:, 0] >= 0).all() and (uv[:, 0] < 96).all()
        assert (uv[:, 1] >= 0).all() and (uv[:, 1] < 64).all()
    assert visible_fraction(scene, cams) == 1.0
    # the architecture's spelling: orbit_cameras(scene, ...)
    same = orbit_cameras(scene, num_views=6, width=96, height=64)
    assert all(torch.equal(a.world_to_cam, b.world_to_cam) for a, b in zip(cams, same))


def test_world_transform_moves_cameras_with_the_scene(tmp_path):
    cams = two_cameras()
    save_colmap_text(cams, tmp_path)
    rng = np.random.default_rng(1)
    scale = 0.37
    T = np.eye(4)
    T[:3, :3] = scale * random_rotation(rng)
    T[:3, 3] = [0.5, -1.0, 2.0]
    moved = load_cameras(tmp_path, world_transform=T)
    pts = fixed_points()
    pts_new = pts @ torch.from_numpy(T[:3, :3]).T + torch.from_numpy(T[:3, 3])
    for a, b in zip(load_cameras(tmp_path), moved):
        uv_a, z_a = project(a, pts)
        uv_b, z_b = project(b, pts_new)
        front = z_a > 0.2  # near the camera plane float32 poses amplify rounding
        assert front.sum() > 10
        torch.testing.assert_close(uv_b[front], uv_a[front], rtol=0, atol=1e-3)
        torch.testing.assert_close(z_b, scale * z_a, rtol=1e-5, atol=1e-5)
    # a scene that lives in the transformed frame is seen by moved cameras only
    scene = GaussianScene(
        pts_new.float(),
        torch.ones(50, 4),
        torch.zeros(50, 3),
        torch.zeros(50),
        torch.zeros(50, 1, 3),
    )
    assert visible_fraction(scene, moved) > visible_fraction(scene, load_cameras(tmp_path))
    with pytest.raises(CameraError, match="not a similarity"):
        transform_cameras(cams, np.diag([1.0, 2.0, 1.0, 1.0]))
    with pytest.raises(CameraError, match="positive determinant"):
        transform_cameras(cams, np.diag([1.0, 1.0, -1.0, 1.0]))


# -- bad inputs -------------------------------------------------------------------------------


def test_missing_paths(tmp_path):
    with pytest.raises(CameraError, match="not found"):
        load_cameras(tmp_path / "nothing")
    with pytest.raises(CameraError, match="no COLMAP model"):
        load_cameras(tmp_path)
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 10 10 5 5 5 5\n")
    with pytest.raises(CameraError, match=r"lacks images\.bin / images\.txt"):
        load_cameras(tmp_path)
    (tmp_path / "poses.csv").write_text("x")
    with pytest.raises(CameraError, match="expected a COLMAP model folder"):
        load_cameras(tmp_path / "poses.csv")


def test_truncated_binary(tmp_path):
    save_colmap_binary(two_cameras(), tmp_path)
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[:-7])
    with pytest.raises(CameraError, match=r"images\.bin: truncated COLMAP binary"):
        load_cameras(tmp_path)
    save_colmap_binary(two_cameras(), tmp_path)
    data = (tmp_path / "cameras.bin").read_bytes()
    (tmp_path / "cameras.bin").write_bytes(data[:30])
    with pytest.raises(CameraError, match=r"cameras\.bin: truncated COLMAP binary"):
        load_cameras(tmp_path)


def test_unknown_model_id_and_name(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(_cameras_bin([(1, 42, 10, 10, [])]))
    (tmp_path / "images.bin").write_bytes(_images_bin([]))
    with pytest.raises(CameraError, match="unknown COLMAP model id 42"):
        load_cameras(tmp_path)
    txt = tmp_path / "txt"
    txt.mkdir()
    (txt / "cameras.txt").write_text("1 KANNALA 10 10 5 5 5 5\n")
    (txt / "images.txt").write_text("")
    with pytest.raises(CameraError, match="unknown COLMAP camera model 'KANNALA'"):
        load_cameras(txt)
    (txt / "cameras.txt").write_text("1 PINHOLE 10 10 5 5 5\n")
    with pytest.raises(CameraError, match="PINHOLE needs 4 parameters, got 3"):
        load_cameras(txt)


def test_image_with_unknown_camera_id(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 10 10 5 5 5 5\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 2 a.png\n\n")
    with pytest.raises(CameraError, match="unknown camera id 2"):
        load_cameras(tmp_path)


def test_bad_transforms_json(tmp_path):
    path = tmp_path / "transforms.json"
    path.write_text('{"frames": [')
    with pytest.raises(CameraError, match="not valid JSON"):
        load_cameras(path)
    path.write_text('{"frames": 3}')
    with pytest.raises(CameraError, match="'frames' list"):
        load_cameras(path)
    frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}
    path.write_text(json.dumps({"fl_x": 10.0, "w": 20, "frames": [frame]}))
    with pytest.raises(CameraError, match=r"frame 0 \(a\.png\) lacks intrinsics cy, h"):
        load_cameras(path)
    path.write_text(
        json.dumps({"fl_x": 10.0, "w": 20, "h": 10, "frames": [{"file_path": "a.png"}]})
    )
    with pytest.raises(CameraError, match="no 'transform_matrix'"):
        load_cameras(path)
    frame["transform_matrix"] = (2 * np.eye(4)).tolist()
    path.write_text(json.dumps({"fl_x": 10.0, "w": 20, "h": 10, "frames": [frame]}))
    with pytest.raises(CameraError, match="not orthonormal"):
        load_cameras(path)


def test_orbit_argument_errors():
    with pytest.raises(CameraError, match="radius"):
        orbit_cameras([0, 0, 0], -1.0)
    with pytest.raises(CameraError, match="elevations_deg"):
        orbit_cameras([0, 0, 0], 1.0, elevations_deg=(90,))
    with pytest.raises(CameraError, match="num_views"):
        orbit_cameras([0, 0, 0], 1.0, num_views=0)


# -- the up axis of generated views ---------------------------------------------------------


def _rotated_demo(R: np.ndarray) -> GaussianScene:
    from gsbp_ros.demo_scene import make_demo_scene

    scene = make_demo_scene(density=0.2).scene
    means = scene.means.double().numpy() @ R.T + np.array([3.0, -1.0, 2.0])
    return GaussianScene(
        torch.from_numpy(means).float(),
        scene.quats,
        scene.log_scales,
        scene.logit_opacities,
        scene.sh,
    )


def test_up_axis_comes_from_the_scene_not_a_fixed_z():
    from gsbp_ros.cameras import estimate_up

    assert np.array_equal(estimate_up(_rotated_demo(np.eye(3))), [0.0, 0.0, 1.0])  # snapped
    rng = np.random.default_rng(3)
    for _ in range(3):
        R = random_rotation(rng)
        scene = _rotated_demo(R)  # a COLMAP-like frame: the table's normal points anywhere
        up = estimate_up(scene)
        assert math.degrees(math.acos(np.clip(up @ R[:, 2], -1, 1))) < 1.0
        # orbit views circle that axis: each sits 20 or 45 degrees above the table plane
        cams = cameras_for_scene(scene, num_views=4, width=64, height=48)
        lo, hi = scene.bounds(quantile=0.01)
        center = ((lo + hi) / 2).double().numpy()
        for i, cam in enumerate(cams):
            offset = cam.center.double().numpy() - center
            elevation = math.degrees(math.asin(offset @ up / np.linalg.norm(offset)))
            assert elevation == pytest.approx((20.0, 45.0)[i % 2], abs=1e-3)
            # and the scene's up points up in the image
            w2c = cam.world_to_cam.double().numpy()
            assert (w2c[:3, :3] @ up)[1] < 0
    # given cameras (held upright, here rolled a little) decide the axis
    eye = np.array([[0.0, -3.0, 1.0], [3.0, 0.0, 1.0], [0.0, 3.0, 1.5]])
    held = []
    for i, e in enumerate(eye):
        tilt = np.array([0.1 * (i - 1), 0.0, 1.0])
        held.append(
            Camera(
                f"{i}.png", torch.eye(3) * 50, torch.from_numpy(look_at(e, [0, 0, 0], tilt)), 8, 8
            )
        )
    from_cameras = estimate_up(_blob_scene(), held)
    assert math.degrees(math.acos(from_cameras[2])) < 8.0  # the rolls nearly cancel
    sideways = [
        Camera(
            "y.png",
            torch.eye(3) * 50,
            torch.from_numpy(look_at([0, 0, 5], [0, 0, 0], [0, 1, 0])),
            8,
            8,
        )
    ]
    assert np.array_equal(estimate_up(_blob_scene(), sideways), [0.0, 1.0, 0.0])


def test_absurd_camera_sizes_are_refused_before_anything_is_allocated(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(_cameras_bin([(1, 1, 100000, 100000, [5.0, 5, 5, 5])]))
    (tmp_path / "images.bin").write_bytes(
        _images_bin([(1, [1.0, 0, 0, 0, 0, 0, 0], 1, "a.png", 0)])
    )
    with pytest.raises(CameraError, match=r"'a\.png': size 100000x100000 exceeds 16384") as info:
        load_cameras(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(CameraError, match="exceeds 16384"):
        two_cameras()[0].scaled(200.0)
    with pytest.raises(CameraError, match="whole numbers"):
        Camera("a.png", torch.eye(3), torch.eye(4), 10.5, 10)
    (tmp_path / "images.bin").write_bytes(
        _images_bin([(1, [0.0, 0, 0, 0, 0, 0, 0], 1, "a.png", 0)])
    )
    (tmp_path / "cameras.bin").write_bytes(_cameras_bin([(1, 1, 10, 10, [5.0, 5, 5, 5])]))
    with pytest.raises(CameraError, match="invalid rotation"):
        load_cameras(tmp_path)
