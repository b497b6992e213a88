"""The `gsbp` command line: real files on disk, one real subprocess, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_backproject import MapSource, cameras, random_scene

from gsbp_ros.backproject import backproject
from gsbp_ros.cameras import save_colmap_binary, save_colmap_text
from gsbp_ros.cli import main


@pytest.fixture
def colmap_scene(tmp_path: Path):
    """A scene the code has never seen: random splats, non-square views, off-centre cx/cy."""
    scene = random_scene(n=80, seed=11)
    scene.save(tmp_path / "point_cloud.ply")
    cams = cameras(3)
    save_colmap_binary(cams, tmp_path / "sparse" / "0")
    feats = tmp_path / "feats"
    feats.mkdir()
    g = torch.Generator().manual_seed(4)
    maps = {}
    for i, c in enumerate(cams):
        maps[c.stem] = torch.randn(4 + i, 9, 5, generator=g)
        np.save(feats / f"{c.stem}.npy", maps[c.stem].numpy())
    return tmp_path, scene, cams, maps


def test_backproject_cli_matches_library_on_colmap_scene(colmap_scene, capsys):
    root, scene, cams, maps = colmap_scene
    out = root / "field.safetensors"
    rc = main(
        [
            "backproject",
            "--scene",
            str(root / "point_cloud.ply"),
            "--cameras",
            str(root / "sparse" / "0"),
            "--features-dir",
            str(root / "feats"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    raw = load_file(str(out))
    assert raw["features"].shape == (80, 5) and raw["weight"].shape == (80,)
    want = backproject(scene, cams, {"default": MapSource(maps)}, engine="torch")
    torch.testing.assert_close(raw["features"], want.features["default"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raw["weight"], want.weights["default"], atol=1e-5, rtol=1e-5)
    assert "views 3/3" in capsys.readouterr().err


def _run(args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gsbp_ros.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=300,
    )


def test_backproject_cli_accumulated_text_model_and_missing_map(colmap_scene):
    root, scene, cams, maps = colmap_scene
    save_colmap_text(cams, root / "text_model")
    (root / "feats" / f"{cams[2].stem}.npy").unlink()
    out = root / "acc.safetensors"
    proc = _run(
        [
            "backproject",
            "--scene",
            str(root / "point_cloud.ply"),
            "--cameras",
            str(root / "text_model"),
            "--features-dir",
            str(root / "feats"),
            "--out",
            str(out),
            "--mode",
            "accumulated",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert f"view {cams[2].name} has no feature map" in proc.stderr
    del maps[cams[2].stem]
    want = backproject(scene, cams[:2], {"default": MapSource(maps)}, mode="accumulated")
    torch.testing.assert_close(load_file(str(out))["features"], want.features["default"])


def _args(
    root: Path, out: Path, feats: str = "feats", cams: str = "sparse/0", scene="point_cloud.ply"
):
    return [
        "backproject",
        "--scene",
        str(root / scene),
        "--cameras",
        str(root / cams),
        "--features-dir",
        str(root / feats),
        "--out",
        str(out),
    ]


def test_backproject_cli_errors_leave_no_output(colmap_scene, capsys):
    root, _, cams, maps = colmap_scene
    out = root / "out" / "f.safetensors"
    # Feature maps of differing C.
    np.save(root / "feats" / f"{cams[1].stem}.npy", np.zeros((4, 4, 7), np.float32))
    assert main(_args(root, out)) == 2
    assert "differ in channels" in capsys.readouterr().err
    # NaN in a feature map.
    bad = maps[cams[1].stem].numpy().copy()
    bad[0, 0, 0] = np.nan
    np.save(root / "feats" / f"{cams[1].stem}.npy", bad)
    assert main(_args(root, out)) == 2
    assert "NaN" in capsys.readouterr().err
    # Missing scene, missing cameras, missing feature folder.
    assert main(_args(root, out, scene="nope.ply")) == 2
    assert "nope.ply" in capsys.readouterr().err
    assert main(_args(root, out, cams="nowhere")) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(_args(root, out, feats="nofeats")) == 2
    assert "nofeats" in capsys.readouterr().err
    assert not out.exists()
    assert not list(root.rglob("*.tmp"))


def test_truncated_scene_is_one_line_error(colmap_scene):
    root, *_ = colmap_scene
    data = (root / "point_cloud.ply").read_bytes()
    (root / "cut.ply").write_bytes(data[: len(data) // 2])
    proc = _run(_args(root, root / "x.safetensors", scene="cut.ply"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gsbp: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert not (root / "x.safetensors").exists()


def test_render_cli_writes_png(colmap_scene):
    root, *_ = colmap_scene
    from PIL import Image

    out = root / "view.png"
    rc = main(
        [
            "render",
            "--scene",
            str(root / "point_cloud.ply"),
            "--cameras",
            str(root / "sparse" / "0"),
            "--view",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with Image.open(out) as im:
        assert im.size == (24, 16) and im.mode == "RGB"
        arr = np.asarray(im)
    assert arr.std() > 0, "a view of the scene must not be a flat background"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    from gsbp_ros.demo_scene import write_demo_scene

    out = tmp_path_factory.mktemp("cli_demo")
    write_demo_scene(out, num_views=8, width=120, height=90, density=0.6)
    return out


def _demo_args(demo: Path, *extra: str) -> list[str]:
    return [
        "--scene",
        str(demo / "scene.ply"),
        "--cameras",
        str(demo / "sparse" / "0"),
        "--sources",
        "labels",
        "--label-maps",
        str(demo / "labels" / "objects"),
        "--output-dir",
        str(demo),
        *extra,
    ]


def test_features_segment_and_overlay_on_demo(demo_dir, capsys):
    import json

    from PIL import Image

    from gsbp_ros.evaluate import iou
    from gsbp_ros.field import FeatureField
    from gsbp_ros.scene import GaussianScene

    field_path = demo_dir / "field.safetensors"
    assert main(["features", *_demo_args(demo_dir, "--out", str(field_path))]) == 0
    field = FeatureField.load(field_path)
    assert field.features["labels"].shape[1] == 6  # one-hot: 5 objects and the background
    rc = main(
        [
            "segment",
            *_demo_args(demo_dir),
            "--text",
            "mug",
            "--negative",
            "table",
            "--out-ply",
            str(demo_dir / "mug.ply"),
            "--indices-out",
            str(demo_dir / "mug.json"),
            "--png",
            str(demo_dir / "mug.png"),
            "--view",
            "2",
        ]
    )
    assert rc == 0
    idx = np.array(json.loads((demo_dir / "mug.json").read_text())["indices"])
    truth = np.load(demo_dir / "labels.npy") == 1
    mask = np.zeros(truth.size, bool)
    mask[idx] = True
    assert iou(mask, truth) >= 0.9
    assert GaussianScene.load(demo_dir / "mug.ply").num_gaussians == idx.size
    # Eq. 7 overlay: pixels of the mug in that view's object label map are tinted red.
    with Image.open(demo_dir / "mug.png") as im:
        over = np.asarray(im.convert("RGB")).astype(int)
    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.images import read_label_image

    cam = load_cameras(demo_dir / "sparse" / "0")[2]
    gt = read_label_image(demo_dir / "labels" / "objects" / f"{cam.stem}.png") == 2
    reddish = (over[..., 0] - over[..., 1] > 60) & (over[..., 0] - over[..., 2] > 60)
    assert gt.sum() > 50
    assert iou(reddish & gt, gt) > 0.8  # mug pixels are highlighted
    assert (reddish & ~gt).sum() < 0.2 * gt.sum()  # the rest mostly is not
    assert "overlay of view" in capsys.readouterr().out


def test_transfer_with_source_cameras_on_demo(demo_dir):
    from PIL import Image

    from gsbp_ros.evaluate import iou
    from gsbp_ros.images import read_label_image
    from gsbp_ros.scene import GaussianScene

    names = __import__("json").loads((demo_dir / "names.json").read_text())
    handle = names["parts"].index("mug_handle") + 1
    images, masks = [], []
    for stem in sorted(p.stem for p in (demo_dir / "labels" / "parts").glob("*.png")):
        parts = read_label_image(demo_dir / "labels" / "parts" / f"{stem}.png")
        mpath = demo_dir / "masks" / f"{stem}.png"
        mpath.parent.mkdir(exist_ok=True)
        Image.fromarray((parts == handle).astype(np.uint8)).save(mpath)
        images.append(str(demo_dir / "images" / f"{stem}.png"))
        masks.append(str(mpath))
    out = demo_dir / "transfer"
    rc = main(
        [
            "transfer",
            *_demo_args(demo_dir),
            "--images",
            *images,
            "--masks",
            *masks,
            "--labels",
            "grasp",
            "--source-cameras",
            str(demo_dir / "sparse" / "0"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    grasp = GaussianScene.load(out / "grasp.ply")
    truth = np.load(demo_dir / "part_labels.npy") == handle - 1
    # The exported handle Gaussians are the true handle's (matched by position).
    scene = GaussianScene.load(demo_dir / "scene.ply")
    sel = np.isin(scene.means.numpy().view("f4,f4,f4"), grasp.means.numpy().view("f4,f4,f4"))
    assert iou(sel.ravel(), truth) >= 0.8


def test_segment_errors_are_one_line(demo_dir, capsys):
    assert main(["segment", *_demo_args(demo_dir), "--text", "spaceship"]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("gsbp: error:")]
    assert len(errors) == 1 and "clip" in errors[0] and "Traceback" not in err
    assert main(["segment", *_demo_args(demo_dir), "--text", " ,"]) == 2
    assert "positive" in capsys.readouterr().err
    rc = main(["segment", *_demo_args(demo_dir), "--text", "mug", "--out-ply", "/etc/x.ply"])
    assert rc == 2 and "outside" in capsys.readouterr().err


def test_pixel_prompt_selects_the_clicked_object(demo_dir):
    import json

    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.evaluate import iou
    from gsbp_ros.images import read_label_image

    cam = load_cameras(demo_dir / "sparse" / "0")[3]
    objects = read_label_image(demo_dir / "labels" / "objects" / f"{cam.stem}.png")
    rows, cols = np.nonzero(objects == 3)  # the bowl (object 2, stored as 2 + 1)
    pick = np.argsort((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)[0]
    u, v = int(cols[pick]), int(rows[pick])
    out = demo_dir / "bowl_click.json"
    rc = main(
        [
            "segment",
            *_demo_args(demo_dir),
            "--pixel",
            f"{u},{v}",
            "--view",
            cam.stem,
            "--indices-out",
            str(out),
        ]
    )
    assert rc == 0
    idx = np.array(json.loads(out.read_text())["indices"])
    truth = np.load(demo_dir / "labels.npy") == 2
    mask = np.zeros(truth.size, bool)
    mask[idx] = True
    assert iou(mask, truth) >= 0.9
    assert main(["segment", *_demo_args(demo_dir), "--pixel", "1,2,3"]) == 2


def test_backproject_under_torchrun_equals_one_process(colmap_scene):
    """Two gloo ranks started by torchrun shard the views; rank 0 writes the same field."""
    root, scene, cams, maps = colmap_scene
    out = root / "ranks.safetensors"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "gsbp_ros.cli",
            *_args(root, out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1 of 2" in proc.stdout
    want = backproject(scene, cams, {"default": MapSource(maps)}, engine="torch")
    raw = load_file(str(out))
    torch.testing.assert_close(raw["features"], want.features["default"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raw["weight"], want.weights["default"], atol=1e-5, rtol=1e-5)


def test_backproject_cli_carries_raster_options_and_render_scale(colmap_scene, capsys):
    """--rasterize-mode/--eps2d/--near-plane/--far-plane/--render-scale reach the engine: the
    field equals the library's with the same options, and differs from the defaults."""
    from gsbp_ros.raster import RasterOptions

    root, scene, cams, maps = colmap_scene
    out = root / "aa.safetensors"
    flags = ["--rasterize-mode", "antialiased", "--eps2d", "0.1", "--near-plane", "0.5"]
    flags += ["--far-plane", "4.5", "--render-scale", "0.5", "--engine", "numba"]
    assert main([*_args(root, out), "--device", "cpu", *flags]) == 0
    assert "raster engine numba" in capsys.readouterr().out
    options = RasterOptions(rasterize_mode="antialiased", eps2d=0.1, near_plane=0.5, far_plane=4.5)
    want = backproject(
        scene, cams, {"default": MapSource(maps)}, engine="torch", options=options, render_scale=0.5
    )
    default = backproject(scene, cams, {"default": MapSource(maps)}, engine="torch")
    raw = load_file(str(out))
    torch.testing.assert_close(raw["weight"], want.weights["default"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raw["features"], want.features["default"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(raw["weight"], default.weights["default"], atol=1e-3)
    # bad values: one line, exit 2, nothing written
    bad = root / "bad.safetensors"
    assert main([*_args(root, bad), "--eps2d", "-1"]) == 2
    assert main([*_args(root, bad), "--near-plane", "5", "--far-plane", "1"]) == 2
    err = capsys.readouterr().err
    assert "eps2d must be >= 0" in err and "far_plane (1.0) must be greater" in err
    assert not bad.exists()
