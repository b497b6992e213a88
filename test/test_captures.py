"""Capture folders as training tools write them: the scene and cameras found in each layout
land on the splat (a view rendered through the loaded camera equals the reference render of
the same view), and bad folders get one line naming the file and what is wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from capture_layouts import (
    demo_and_cameras,
    moved_cameras,
    similarity,
    transform_scene,
    write_blender,
    write_inria_cameras,
    write_sparse_cloud,
    write_splatfacto_export,
)

from gsbp_ros.camera import Camera
from gsbp_ros.cameras import load_cameras, save_colmap_text, transform_cameras
from gsbp_ros.captures import find_capture
from gsbp_ros.errors import CameraError, SceneError
from gsbp_ros.raster import render_rgb
from gsbp_ros.scene import GaussianScene


@pytest.fixture(scope="module")
def reference():
    """The demo scene, four views of it and their renders (the oracle of every layout)."""
    demo, cams = demo_and_cameras()
    renders = [render_rgb(demo.scene, c, engine="torch") for c in cams]
    return demo.scene, cams, renders


def assert_lands(scene: GaussianScene, loaded: list[Camera], renders: list[torch.Tensor]) -> None:
    """Each loaded camera renders the loaded scene as the reference renders its view."""
    assert len(loaded) == len(renders)
    for cam, want in zip(loaded, renders):
        got = render_rgb(scene, cam, engine="torch")
        assert got.shape == want.shape
        # float32 poses and splats moved through a similarity: differences are rounding
        assert (got - want).abs().max() < 2e-3, cam.name
        assert (got - want).abs().mean() < 1e-5, cam.name


# -- the layouts -------------------------------------------------------------------------------


def test_inria_output_folder_highest_iteration_and_cameras_json(tmp_path, reference):
    demo_scene, cams, renders = reference
    T = similarity(seed=1, scale=2.5)
    moved = transform_scene(demo_scene, T)
    root = tmp_path / "output" / "garden"
    for it, scene in ((500, demo_scene), (7000, demo_scene), (30000, moved)):
        folder = root / "point_cloud" / f"iteration_{it}"
        folder.mkdir(parents=True)
        scene.save(folder / "point_cloud.ply")
    write_sparse_cloud(root / "input.ply")
    write_inria_cameras(root / "cameras.json", cams, moved_cameras(cams, T))
    cap = find_capture(root)
    assert cap.scene_file == root / "point_cloud" / "iteration_30000" / "point_cloud.ply"
    assert "highest of iterations 500, 7000, 30000" in cap.scene_note
    loaded = cap.load_cameras()
    assert [c.name for c in loaded] == [c.stem for c in cams]  # img_name is the stem
    assert_lands(cap.load_scene(), loaded, renders)
    lines = "\n".join(cap.describe())
    assert str(root / "cameras.json") in lines and "Inria 3DGS cameras.json, 4 views" in lines
    assert cap.images_dir is None  # no training images anywhere: features from renders
    # The ply itself as the scene path: cameras.json is found in the output folder above it,
    # and the training images where the output's cfg_args says they are.
    source = tmp_path / "datasets" / "garden"
    (source / "images_4").mkdir(parents=True)
    (root / "cfg_args").write_text(
        f"Namespace(eval=False, images='images_4', model_path='{root}', resolution=-1, "
        f"sh_degree=3, source_path='{source}', white_background=False)"
    )
    again = find_capture(cap.scene_file)
    assert again.cameras_path == root / "cameras.json"
    again.load_cameras()
    assert again.images_dir == source / "images_4" and "cfg_args" in again.images_note


def test_splatfacto_export_cameras_land_through_the_dataparser_transform(tmp_path, reference):
    demo_scene, cams, renders = reference
    T_dp = similarity(seed=2, scale=1.0)
    write_splatfacto_export(tmp_path, demo_scene, cams, T_dp, scale=0.37)
    cap = find_capture(tmp_path)
    assert cap.scene_file == tmp_path / "splat.ply"  # sparse_pc.ply is no splat
    assert cap.cameras_path == tmp_path / "transforms.json"
    assert cap.dataparser == tmp_path / "dataparser_transforms.json"
    loaded = cap.load_cameras()
    exported = cap.load_scene()
    assert_lands(exported, loaded, renders)
    assert "dataparser" in "\n".join(cap.describe())
    assert cap.images_dir == tmp_path  # frame paths (images/...) are relative to the JSON
    # The same cameras in the transforms.json frame alone do not land: the transform matters.
    raw = load_cameras(tmp_path / "transforms.json")
    got = render_rgb(exported, raw[0], engine="torch")
    assert (got - renders[0]).abs().mean() > 0.05
    # COLMAP poses (the original frame, without applied_transform) land as well.
    save_colmap_text(cams, tmp_path / "colmap" / "sparse" / "0")
    colmap = find_capture(tmp_path / "splat.ply", str(tmp_path / "colmap"))
    assert colmap.dataparser is not None
    assert_lands(exported, colmap.load_cameras(), renders)


def test_blender_transforms_take_the_size_from_the_images(tmp_path, reference):
    demo_scene, cams, renders = reference
    T = similarity(seed=3, scale=0.8)
    moved = transform_scene(demo_scene, T)
    moved.save(tmp_path / "scene.ply")
    images = [(255 * r.numpy()).round().astype(np.uint8) for r in renders]
    rgba = [np.concatenate([im, np.full((*im.shape[:2], 1), 255, np.uint8)], -1) for im in images]
    lego = tmp_path / "lego"
    write_blender(lego, cams, moved_cameras(cams, T), rgba)
    cap = find_capture(tmp_path / "scene.ply", str(lego))  # train split of train/val/test
    loaded = cap.load_cameras()
    assert cap.camera_set.source.path == lego / "transforms_train.json"
    assert [c.name for c in loaded] == [f"train/r_{i}.png" for i in range(4)]
    assert all((c.width, c.height) == (64, 48) for c in loaded)
    assert_lands(cap.load_scene(), loaded, renders)
    assert cap.images_dir == lego  # frame paths are relative to the JSON


def test_splat_file_with_cameras_beside_it(tmp_path, reference):
    demo_scene, cams, renders = reference
    T = similarity(seed=4, scale=1.3)
    moved = transform_scene(demo_scene, T)
    moved.save(tmp_path / "scene.splat")
    write_inria_cameras(tmp_path / "cameras.json", cams, moved_cameras(cams, T))
    cap = find_capture(tmp_path)
    assert cap.scene_file == tmp_path / "scene.splat"
    scene = cap.load_scene()
    loaded = cap.load_cameras()
    # 8-bit colours, opacities and quaternions: close to the reference, not equal
    for cam, want in zip(loaded, renders):
        got = render_rgb(scene, cam, engine="torch")
        mse = float(((got - want) ** 2).mean())
        assert 10 * np.log10(1.0 / mse) > 55.0, cam.name  # 68 dB measured: 8-bit rounding


def test_splat_records_decode_like_the_reference_viewer(tmp_path):
    rec = np.zeros(2, dtype=[("p", "<f4", 3), ("s", "<f4", 3), ("c", "u1", 4), ("q", "u1", 4)])
    rec[0] = ((1.0, -2.0, 3.5), (0.1, 0.2, 0.05), (255, 128, 0, 255), (255, 128, 128, 128))
    # a 90-degree turn about z: q = (cos 45, 0, 0, sin 45) -> bytes 128 + 128 * 0.7071 = 218.5
    rec[1] = ((0, 0, 0), (1e-3, 2e-3, 3e-3), (10, 20, 30, 64), (218, 128, 128, 218))
    (tmp_path / "two.splat").write_bytes(rec.tobytes())
    scene = GaussianScene.load(tmp_path / "two.splat")
    assert torch.equal(scene.means[0], torch.tensor([1.0, -2.0, 3.5]))
    torch.testing.assert_close(scene.scales()[0], torch.tensor([0.1, 0.2, 0.05]))
    # colour = SH_C0 * f_dc + 0.5 = byte / 255, as the viewer shows it
    colors = 0.28209479177387814 * scene.sh[:, 0] + 0.5
    torch.testing.assert_close(colors[0], torch.tensor([1.0, 128 / 255, 0.0]))
    torch.testing.assert_close(scene.opacities()[1], torch.tensor(64 / 255))
    assert float(scene.opacities()[0]) > 0.999  # 255 stays finite: 1 - 1e-6
    q = scene.unit_quats()
    torch.testing.assert_close(q[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(q[1], torch.tensor([0.70711, 0.0, 0.0, 0.70711]), atol=1e-5, rtol=0)


# -- bad folders and files -------------------------------------------------------------------


def test_several_candidates_are_named(tmp_path, reference):
    demo_scene, cams, _ = reference
    demo_scene.save(tmp_path / "a.ply")
    demo_scene.save(tmp_path / "b.splat")
    write_sparse_cloud(tmp_path / "points3D.ply")
    with pytest.raises(SceneError, match=r"several scene files \(a\.ply, b\.splat\)"):
        find_capture(tmp_path)
    (tmp_path / "b.splat").unlink()
    save_colmap_text(cams, tmp_path / "sparse" / "0")
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(CameraError, match=r"several camera files: .*sparse/0 \(COLMAP model\), "):
        find_capture(tmp_path)
    # Choosing one explicitly works; "orbit" asks for generated views.
    assert find_capture(tmp_path, str(tmp_path / "sparse" / "0")).cameras_path is not None
    assert find_capture(tmp_path, "orbit").cameras_path is None
    (tmp_path / "transforms.json").unlink()
    (tmp_path / "transforms_test.json").write_text("{}")
    assert find_capture(tmp_path).cameras_path == tmp_path / "sparse" / "0"
    shutil.rmtree(tmp_path / "sparse")
    with pytest.raises(CameraError, match=r"only transforms_test\.json"):
        find_capture(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SceneError, match="no scene in this folder"):
        find_capture(empty)


def _inria_entry(**overrides) -> dict:
    entry = {
        "id": 0,
        "img_name": "a",
        "width": 64,
        "height": 48,
        "position": [0.0, 0.0, -2.0],
        "rotation": np.eye(3).tolist(),
        "fx": 50.0,
        "fy": 50.0,
    }
    entry.update(overrides)
    return entry


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps([_inria_entry(width=100000, height=100000)]), "exceeds 16384 pixels"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps([_inria_entry(fx="abc")]), r"camera 0 \(a\) fx must be a number"),
        (json.dumps([_inria_entry(fy=float("nan"))]), "fy must be finite"),  # a NaN literal
        (json.dumps([_inria_entry(rotation=(2 * np.eye(3)).tolist())]), "not a rotation matrix"),
        (json.dumps([_inria_entry(position=[1, 2])]), "position must be a 1x3"),
        (json.dumps([_inria_entry(), _inria_entry()]), "both name image 'a'"),
        (json.dumps([_inria_entry()])[:-9], "not valid JSON"),
        (json.dumps({"cameras": []}), "expected a JSON object with a 'frames' list"),
        (
            json.dumps({"fl_x": 1.0, "k1": "x", "w": 4, "h": 4, "frames": []}),
            "distortion must be a number",
        ),
        (
            json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": [[1, 0]]}]}),
            r"lacks intrinsics fl_x, fl_y, cx, cy, w, h",
        ),
    ],
)
def test_bad_camera_files_get_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "cameras.json"
    path.write_text(content)
    with pytest.raises(CameraError, match=message) as info:
        load_cameras(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_bad_dataparser_and_splat_files(tmp_path, reference):
    demo_scene, cams, _ = reference
    demo_scene.save(tmp_path / "splat.ply")
    save_colmap_text(cams, tmp_path / "sparse" / "0")
    dp = tmp_path / "dataparser_transforms.json"
    for content, message in (
        ({"transform": np.eye(4)[:3].tolist(), "scale": 0.0}, "scale must be positive"),
        ({"transform": [[1, 0, 0]], "scale": 1.0}, "must be a 3x4 or 4x4"),
        ({"transform": (2 * np.eye(4))[:3].tolist()}, "'transform' \\(3x4\\) and 'scale'"),
    ):
        dp.write_text(json.dumps(content))
        cap = find_capture(tmp_path)
        with pytest.raises(CameraError, match=message):
            cap.load_cameras()
    for size, message in ((33, "not a multiple of 32"), (0, "empty .splat")):
        (tmp_path / "x.splat").write_bytes(b"\0" * size)
        with pytest.raises(SceneError, match=message):
            GaussianScene.load(tmp_path / "x.splat")
    rec = np.zeros(8, np.float32)
    rec[0] = np.nan
    (tmp_path / "x.splat").write_bytes(rec.tobytes())
    with pytest.raises(SceneError, match="1 of 1 records have non-finite positions"):
        GaussianScene.load(tmp_path / "x.splat")


def test_moved_cameras_helper_matches_transform_cameras(reference):
    """The layouts' independent pose arithmetic agrees with the library's."""
    _, cams, _ = reference
    T = similarity(seed=5, scale=3.0)
    for c2w, cam in zip(moved_cameras(cams, T), transform_cameras(cams, T)):
        np.testing.assert_allclose(np.linalg.inv(c2w), cam.world_to_cam.double().numpy(), atol=1e-5)
