"""The `gsbp` command line with capture folders: picked files are printed, bad folders get
one `gsbp: error:` line and nothing is written."""

from __future__ import annotations

import json

import numpy as np
from capture_layouts import demo_and_cameras, moved_cameras, write_inria_cameras

from gsbp_ros.cli import _engine_config, build_parser, main


def _inria_output(root):
    demo, cams = demo_and_cameras(views=2, width=40, height=30)
    for it in (100, 2000):
        folder = root / "point_cloud" / f"iteration_{it}"
        folder.mkdir(parents=True)
        demo.scene.save(folder / "point_cloud.ply")
    write_inria_cameras(root / "cameras.json", cams, moved_cameras(cams, np.eye(4)))
    return cams


def test_render_a_training_output_folder_prints_what_it_picked(tmp_path, capsys):
    cams = _inria_output(tmp_path / "out")
    png = tmp_path / "view.png"
    assert (
        main(
            ["render", "--scene", str(tmp_path / "out"), "--view", cams[1].stem, "--out", str(png)]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "iteration_2000/point_cloud.ply (Inria-format .ply; Inria output: highest of" in err
    assert "cameras.json (Inria 3DGS cameras.json, 2 views; found next to the scene)" in err
    assert png.is_file()


def test_ambiguous_folder_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    _inria_output(tmp_path)
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    png = tmp_path / "view.png"
    code = main(["render", "--scene", str(tmp_path), "--out", str(png)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("gsbp: error: ") and "several camera files" in err[0]
    assert "transforms.json" in err[0] and "cameras.json" in err[0]
    assert not png.exists()
    # nested 100,000 deep: the same single line, no traceback
    (tmp_path / "transforms.json").unlink()
    (tmp_path / "cameras.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["render", "--scene", str(tmp_path), "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nested too deeply" in err[0] and not png.exists()


def test_images_and_allow_downloads_reach_the_engine():
    args = build_parser().parse_args(
        ["segment", "--scene", "s", "--text", "mug", "--images", "photos/", "--allow-downloads"]
    )
    cfg = _engine_config(args)
    assert cfg.images_dir == "photos/" and cfg.allow_downloads is True
    args = build_parser().parse_args(["features", "--scene", "s", "--out", "f.safetensors"])
    cfg = _engine_config(args)
    assert cfg.images_dir == "" and cfg.allow_downloads is False
    # transfer's --images are its annotated sources; the capture photos are --scene-images
    args = build_parser().parse_args(
        [
            "transfer",
            "--scene",
            "s",
            "--images",
            "a.png",
            "--masks",
            "a_mask.png",
            "--labels",
            "grasp",
            "--scene-images",
            "none",
            "--out",
            "o",
        ]
    )
    assert args.images == ["a.png"] and _engine_config(args).images_dir == "none"
