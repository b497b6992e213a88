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
