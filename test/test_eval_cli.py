"""`gsbp eval` modes end to end on a small demo scene: reports, plots, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_support import small_demo_folder
from PIL import Image

from gsbp_ros.cli import main

FAST = [
    "--seeds", "1", "--drop", "0,0.5", "--flip", "0.3", "--noise", "none", "--boundary",
    "none", "--scales", "none", "--no-combined", "--holdout", "4", "--iterations", "5,20",
    "--cg-iterations", "5", "--device", "cpu", "--engine", "torch",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return small_demo_folder(tmp_path_factory)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("gsbp: error:")]
    assert len(errors) == 1 and not any("Traceback" in ln for ln in err), err
    return errors[0]


def test_demo_mode_prints_the_iou_table(demo, tmp_path, capsys):
    assert main(["eval", "--demo", str(demo), "--out", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "| text 'mug' |" in out and "lifted part 'mug_handle'" in out
    rows = json.loads((tmp_path / "d.json").read_text())
    assert [r["query"] for r in rows[:5]] == [f"text '{n}'" for n in json.loads(
        (demo / "names.json").read_text())["objects"]]  # fmt: skip
    assert min(r["iou"] for r in rows[:5]) > 0.85


def test_robustness_and_baseline_write_a_report_with_plots(demo, tmp_path):
    out = tmp_path / "docs" / "quality.md"
    assert main(["eval", "--demo", str(demo), "--robustness", "--baseline", *FAST,
                 "--out", str(out)]) == 0  # fmt: skip
    text = out.read_text()
    for heading in (
        "## Clean label maps",
        "## Robustness sweep",
        "### Views dropped",
        "### Whole segments with a wrong label",
        "## Distillation baseline, side by side",
        "Where distillation wins",
    ):
        assert heading in text, heading
    assert "| 50% |" in text and "distillation: Adam, 20 it." in text
    assert "least-squares optimum (CG)" in text
    assert (
        f"gsbp demo-scene --out {demo} && gsbp eval --demo {demo} --robustness --baseline" in text
    )
    assert "## Summary" in text and "back-projection reaches a mean 3D IoU" in text
    # one plot per axis with more than one level, and the baseline's
    assert "![Views dropped](quality_drop.png)" in text
    for name in ("quality_drop.png", "quality_baseline.png"):
        with Image.open(out.parent / name) as im:
            assert im.format == "PNG" and im.width > 300
    assert not (out.parent / "quality_flip.png").exists()  # one level: table only


def test_any_scene_with_ground_truth_json_holds_every_run(demo, tmp_path):
    out = tmp_path / "q.json"
    args = ["eval", "--scene", str(demo / "scene.ply"), "--cameras", str(demo / "sparse" / "0"),
            "--label-maps", str(demo / "labels" / "objects"), "--gt", str(demo / "labels.npy"),
            "--robustness", "--baseline", *FAST, "--holdout", "0", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    res = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert res["sweep"]["rows"][0]["miou2d"]["expected"] is None  # no held-out view
    assert "demo" not in res  # the clean demo table is for --demo only
    assert len(res["sweep"]["runs"]) == 3  # drop 0, drop 0.5, flip 0.3; one seed each
    rows = res["sweep"]["rows"]
    assert rows[0]["condition"] == {"drop": 0.0} and rows[0]["mean3d"] > 0.8
    methods = [r["method"] for r in res["baseline"]]
    assert methods.count("back-projection (expected)") == 2  # clean and corrupted input
    assert all(r["views"] == 8 for r in res["baseline"][:4])  # nothing held out
    assert "distillation: Adam, 5 it." in methods and "distillation: Adam, 20 it." in methods
    for r in res["baseline"]:
        assert r["seconds"] > 0 and r["cpu_seconds"] > 0
        assert set(r["iou3d"]) == set(rows[0]["iou3d"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--robustness", "--drop", ""], "--drop is an empty sweep range"),
        (["--robustness", "--flip", "0.1,,0.2"], "--flip is an empty sweep range"),
        (["--robustness", "--drop", "none", "--flip", "none", "--noise", "none",
          "--boundary", "none", "--scales", "none", "--no-combined"], "the sweep is empty"),
        (["--robustness", "--boundary", "1.5"], "whole numbers"),
        (["--baseline", "--iterations", "0"], "at least one iteration"),
        (["--robustness", "--out", "quality.txt"], "must end in .md"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_errors(demo, capsys, extra, message):
    assert main(["eval", "--demo", str(demo), *extra]) == 2
    assert message in _one_error(capsys)


def test_bad_ground_truth_and_label_maps_are_one_line_errors(demo, tmp_path, capsys):
    short = tmp_path / "short.npy"
    np.save(short, np.arange(4))
    base = ["eval", "--scene", str(demo / "scene.ply"), "--cameras", str(demo / "sparse" / "0"),
            "--robustness", "--label-names", "table,mug,bowl,box,bottle"]  # fmt: skip
    maps = str(demo / "labels" / "objects")
    assert main([*base, "--label-maps", maps, "--gt", str(short)]) == 2
    assert "has 4 entries but the scene has" in _one_error(capsys)
    assert main([*base, "--label-maps", maps]) == 2
    assert "--gt" in _one_error(capsys)
    bad = tmp_path / "maps"
    bad.mkdir()
    np.save(bad / "orbit_002.npy", np.full((48, 64), 6, np.int64))
    assert main([*base, "--label-maps", str(bad), "--gt", str(demo / "labels.npy")]) == 2
    assert "holds value 6" in _one_error(capsys)


def test_plotting_is_imported_only_when_plots_are_drawn():
    code = (
        "import sys, gsbp_ros.cli, gsbp_ros.evaluation.command, gsbp_ros.evaluation.report, "
        "gsbp_ros.evaluation.robustness, gsbp_ros.evaluation.comparison; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.stdout.strip() == "False"


def test_docs_command_is_what_the_report_quotes():
    from gsbp_ros.cli import build_parser
    from gsbp_ros.evaluation.command import DOCS_COMMAND, command_line

    eval_part = DOCS_COMMAND.split(" && ")[1]
    args = build_parser().parse_args(eval_part.split()[1:])
    assert f"gsbp demo-scene --out {args.demo} && {command_line(args)}" == DOCS_COMMAND
