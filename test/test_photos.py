"""Real photos as the feature models' input: matching by image name, resizing to the view,
fallback to renders, cache keys, and the engine feeding them to DINOv2."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsbp_ros.camera import Camera
from gsbp_ros.demo_scene import write_demo_scene
from gsbp_ros.engine import EngineConfig, GsbpEngine
from gsbp_ros.errors import FeatureError
from gsbp_ros.features import Dinov2Source
from gsbp_ros.features.testing import make_tiny_dinov2
from gsbp_ros.photos import PhotoSet


def camera(name: str, width: int = 16, height: int = 12) -> Camera:
    K = torch.tensor([[20.0, 0, width / 2], [0, 20.0, height / 2], [0, 0, 1]])
    return Camera(name, K, torch.eye(4), width, height)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def solid(value: int, width: int = 16, height: int = 12, channels: int = 3) -> np.ndarray:
    return np.full((height, width, channels), value, np.uint8)


def test_photos_are_matched_by_name_in_every_layout(tmp_path):
    save(tmp_path / "cam1" / "img_a.jpg", solid(10))  # COLMAP name with a subfolder
    save(tmp_path / "images" / "frame_1.png", solid(20))  # nerfstudio path
    save(tmp_path / "DSC001.JPG", solid(30))  # Inria img_name: the stem
    save(tmp_path / "train" / "r_0.png", solid(40))  # Blender path without extension
    save(tmp_path / "b.png", solid(50))  # basename of a COLMAP name in another folder
    cams = [
        camera("cam1/img_a.jpg"),
        camera("images/frame_1.png"),
        camera("DSC001"),
        camera("train/r_0"),
        camera("cam2/b.png"),
        camera("nothing.png"),
    ]
    photos = PhotoSet(tmp_path, cams)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in photos.paths.items()} == {
        "cam1/img_a.jpg": "cam1/img_a.jpg",
        "images/frame_1.png": "images/frame_1.png",
        "DSC001": "DSC001.JPG",
        "train/r_0": "train/r_0.png",
        "cam2/b.png": "b.png",
    }
    assert photos.missing == ["nothing.png"]
    assert "5 of 6 views have a photo" in photos.summary()
    render = torch.full((12, 16, 3), 0.5)
    values = {"cam1/img_a.jpg": 10, "images/frame_1.png": 20, "train/r_0": 40, "cam2/b.png": 50}
    for cam in cams:
        if cam.name not in values:  # DSC001: a JPEG (lossy); nothing.png: no photo
            continue
        value = values[cam.name]
        got = photos.image(cam, render)
        assert got.shape == (12, 16, 3)
        assert torch.equal(got, torch.full((12, 16, 3), value / 255)), cam.name
    assert photos.image(cams[-1], render) is render
    assert photos.counts() == (4, 1)
    # The photos folder of nerfstudio is the JSON's folder; the images folder itself works too.
    assert PhotoSet(tmp_path / "images", [camera("images/frame_1.png")]).paths


def test_ambiguous_or_misshapen_photos_are_errors_naming_the_file(tmp_path):
    save(tmp_path / "a.jpg", solid(1))
    save(tmp_path / "a.png", solid(2))
    with pytest.raises(FeatureError, match=r"holds a\.jpg, a\.png for camera 'a'"):
        PhotoSet(tmp_path, [camera("a")])
    # Two cameras with one stem (cam1/x.png, cam2/x.png) never share a photo by stem.
    save(tmp_path / "x.png", solid(3))
    shared = PhotoSet(tmp_path, [camera("cam1/x.jpg"), camera("cam2/x.jpg")])
    assert shared.paths == {}
    save(tmp_path / "square.png", solid(4, width=12, height=12))
    with pytest.raises(
        FeatureError, match=r"square\.png is 12x12 but its camera 'square' is 16x12"
    ):
        PhotoSet(tmp_path, [camera("square")])
    with pytest.raises(FeatureError, match="does not exist"):
        PhotoSet(tmp_path / "nope", [camera("a")])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FeatureError, match=r"cannot read photo .*broken\.png"):
        PhotoSet(tmp_path, [camera("broken")])


def test_photos_of_another_size_are_resized_to_the_view(tmp_path):
    # A horizontal ramp at twice the camera's size: resizing keeps a ramp, so each view
    # pixel holds the photo's value at its centre (exact away from the borders).
    width, height = 32, 24
    x = (np.arange(width) + 0.5) * 4.0
    ramp = np.broadcast_to(x[None, :, None], (height, width, 3)).round().astype(np.uint8)
    save(tmp_path / "v.png", ramp)
    photos = PhotoSet(tmp_path, [camera("v.png")])
    got = photos.image(camera("v.png"), torch.zeros(12, 16, 3))
    assert got.shape == (12, 16, 3)
    want = (np.arange(16) + 0.5) * 8.0 / 255  # view pixel u covers photo pixels 2u, 2u+1
    np.testing.assert_allclose(
        got[:, 2:-2, 0].numpy(), np.broadcast_to(want[2:-2], (12, 12)), atol=1e-6
    )
    # A view rendered at another scale (render_scale) gets the photo at its size too.
    half = camera("v.png").scaled(0.5)
    assert photos.image(half, torch.zeros(6, 8, 3)).shape == (6, 8, 3)


def test_transparent_photos_are_composited_over_the_render_background(tmp_path):
    rgba = solid(200, channels=4)
    rgba[..., 3] = 0
    rgba[:, :8, 3] = 255
    save(tmp_path / "t.png", rgba)
    got = PhotoSet(tmp_path, [camera("t.png")]).image(camera("t.png"), torch.zeros(12, 16, 3))
    assert torch.equal(got[:, :8], torch.full((12, 8, 3), 200 / 255))
    assert torch.equal(got[:, 8:], torch.zeros(12, 8, 3))
    white = PhotoSet(tmp_path, [camera("t.png")], background=(1.0, 1.0, 1.0))
    assert torch.equal(
        white.image(camera("t.png"), torch.zeros(12, 16, 3))[:, 8:], torch.ones(12, 8, 3)
    )


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return make_tiny_dinov2(tmp_path_factory.mktemp("dino"))


def test_dinov2_runs_on_the_photo_and_keys_the_cache_by_it(tmp_path, dino_dir):
    rng = np.random.default_rng(0)
    save(tmp_path / "p.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    cams = [camera("p.png"), camera("q.png")]
    photos = PhotoSet(tmp_path, cams)
    plain = Dinov2Source(str(dino_dir), input_size=56)
    source = Dinov2Source(extractor=plain.extractor, photos=photos)
    render = torch.rand(12, 16, 3, generator=torch.Generator().manual_seed(1))
    photo = photos.image(cams[0], render)
    torch.testing.assert_close(
        source.view_features(cams[0], render), plain.extractor.extract(photo[None])[0]
    )
    torch.testing.assert_close(
        source.view_features(cams[1], render), plain.view_features(cams[1], render)
    )
    assert "photos" not in plain.cache_key()
    key = source.cache_key()
    assert key["photos"] and {k: v for k, v in key.items() if k != "photos"} == plain.cache_key()
    st = (tmp_path / "p.png").stat()
    os.utime(tmp_path / "p.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new photo
    assert (
        Dinov2Source(extractor=plain.extractor, photos=PhotoSet(tmp_path, cams)).cache_key() != key
    )


def test_engine_feeds_photos_to_dinov2_and_says_how_many(tmp_path, dino_dir, monkeypatch):
    """Photos replace renders in the field: the photos here are colour-inverted renders, so
    the DINOv2 field differs from the render-only one; the log counts photos and renders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    demo = tmp_path / "demo"
    write_demo_scene(demo, num_views=4, width=48, height=36, density=0.3)
    photos = tmp_path / "photos"
    stems = sorted(p.stem for p in (demo / "images").glob("*.png"))
    for stem in stems[:3]:
        img = np.asarray(Image.open(demo / "images" / f"{stem}.png"))
        save(photos / f"{stem}.jpg", 255 - img)

    def run(images_dir: str) -> tuple[GsbpEngine, list[str]]:
        logs: list[str] = []
        cfg = EngineConfig(
            scene_path=str(demo / "scene.ply"),
            cameras_path=str(demo / "sparse" / "0"),
            device="cpu",
            feature_sources=["dinov2"],
            dinov2_model=str(dino_dir),
            feature_input_size=28,
            images_dir=images_dir,
        )
        eng = GsbpEngine(cfg, log=logs.append)
        eng.start()
        assert eng.status().state == "ready", eng.status().message
        return eng, logs

    with_photos, logs = run(str(photos))
    assert any("feature input: 3 photos, 1 renders" in m for m in logs), logs
    assert any(m.startswith("photos: 3 of 4 views have a photo") for m in logs), logs
    renders, logs = run("none")
    assert any("photos: none" in m for m in logs), logs
    assert not torch.allclose(
        with_photos.field.features["dinov2"], renders.field.features["dinov2"], atol=1e-3
    )
    # The demo's own images/ beside sparse/ are found without a flag: photos of every view.
    _, logs = run("")
    assert any("feature input: 4 photos, 0 renders" in m for m in logs), logs
    # A folder given explicitly that matches no view is a start-up error naming it.
    (tmp_path / "other").mkdir()
    save(tmp_path / "other" / "unrelated.png", solid(0))
    eng = GsbpEngine(
        EngineConfig(
            scene_path=str(demo / "scene.ply"),
            cameras_path=str(demo / "sparse" / "0"),
            feature_sources=["dinov2"],
            dinov2_model=str(dino_dir),
            images_dir=str(tmp_path / "other"),
        ),
        log=lambda m: None,
    )
    eng.start()
    assert eng.status().state == "failed"
    assert "has no photo of any of the 4 views" in eng.status().message
