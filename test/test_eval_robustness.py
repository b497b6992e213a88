"""The robustness sweep on a small demo scene: what it scores, reproducibility, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from eval_support import small_demo_folder

from gsbp_ros.errors import GsbpError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return small_demo_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def data(demo):
    from gsbp_ros.evaluation.labelled import load_demo

    return load_demo(demo)


@pytest.fixture(scope="module")
def sweep(data):
    from gsbp_ros.evaluation.robustness import SweepConfig, run_sweep

    cfg = SweepConfig(
        drop=[0.0, 0.5],
        flip=[0.4],
        noise=[0.3],
        boundary=[-1, 2],
        scale=[0.5],
        combined=[{"drop": 0.3, "flip": 0.2}, {"boundary": -1, "ignore_unlabelled": 1.0}],
        seeds=2,
        holdout=4,
        engine="torch",
    )
    return cfg, run_sweep(data, cfg)


def test_clean_run_scores_the_plain_lifting(data, sweep):
    from gsbp_ros.backproject import finalize
    from gsbp_ros.evaluation.lifting import LabelMapFiles, WeightBank, lift, select_label
    from gsbp_ros.evaluation.metrics import iou
    from gsbp_ros.evaluation.robustness import is_random

    cfg, results = sweep
    random = [c for _, c in cfg.conditions() if is_random(c)]
    # random conditions once per seed, the others once, plus the antialiased 0.5x lift
    assert len(results) == len(random) * cfg.seeds + len(cfg.conditions()) - len(random) + 1
    clean = [r for r in results if r.condition == {"drop": 0.0}]
    assert len(clean) == 1
    train, test = data.split(cfg.holdout)
    assert len(test) == 2 and len(train) == 6 and clean[0].views == 6
    with LabelMapFiles(data.names) as files:
        source = files.source({c.stem: data.label_maps[c.stem] for c in train})
        sums, weight, _ = lift(WeightBank(data.scene, engine="torch"), train, source)
        feats = finalize(sums, weight)
        expect = {
            n: iou(select_label(source, feats, weight > 0, n), data.truth == i)
            for i, n in enumerate(data.names)
        }
    assert clean[0].iou3d["expected"] == expect
    assert min(expect.values()) > 0.8
    assert all(0.5 < r.miou2d["expected"] <= 1.0 for r in clean)


def test_corruption_costs_accuracy_and_finishes_agree_in_3d(data, sweep):
    from gsbp_ros.evaluation.robustness import summarize

    _cfg, results = sweep
    rows = {(r["group"], str(r["condition"])): r for r in summarize(results, data.names)}
    clean = rows[("drop", "{'drop': 0.0}")]
    flipped = rows[("flip", "{'flip': 0.4}")]
    assert flipped["mean3d"] < clean["mean3d"] - 0.02
    assert rows[("drop", "{'drop': 0.5}")]["views"] == 3
    assert all(r["finishes_agree_3d"] for r in rows.values())
    assert flipped["worst3d"] <= flipped["mean3d"]
    # a seed changes which segments flip
    per_seed = [r.iou3d["expected"] for r in results if r.condition == {"flip": 0.4}]
    assert per_seed[0] != per_seed[1]


def test_eroded_maps_lose_less_when_unlabelled_pixels_are_ignored(data, sweep):
    from gsbp_ros.evaluation.comparison import describe_condition
    from gsbp_ros.evaluation.robustness import summarize

    _cfg, results = sweep
    rows = {str(r["condition"]): r for r in summarize(results, data.names)}
    voted = rows["{'boundary': -1}"]
    ignored = rows["{'boundary': -1, 'ignore_unlabelled': 1.0}"]
    assert ignored["group"] == "combined"
    assert ignored["mean3d"] > voted["mean3d"] + 0.05
    assert describe_condition(ignored["condition"]) == "eroded 1 px, unlabelled pixels ignored"


def test_antialiased_lifting_recovers_what_the_low_pass_costs_at_low_resolution(data, sweep):
    from gsbp_ros.evaluation.robustness import summarize

    _cfg, results = sweep
    rows = {r["group"]: r for r in summarize(results, data.names) if "scale" in r["condition"]}
    assert rows["scale_antialiased"]["mean3d"] > rows["scale"]["mean3d"] + 0.05


def test_footprint_of_one_gaussian_is_focal_times_scale_over_depth():
    import torch

    from gsbp_ros.camera import Camera
    from gsbp_ros.evaluation.robustness import footprint_px
    from gsbp_ros.scene import GaussianScene

    scene = GaussianScene(
        means=torch.tensor([[0.0, 0.0, 4.0]]),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        log_scales=torch.log(torch.tensor([[0.02, 0.02, 0.02]])),
        logit_opacities=torch.tensor([2.0]),
        sh=torch.zeros(1, 1, 3),
    )
    K = torch.tensor([[300.0, 0.0, 32.0], [0.0, 300.0, 24.0], [0.0, 0.0, 1.0]])
    cam = Camera("c.png", K, torch.eye(4), 64, 48)
    assert footprint_px(scene, [cam]) == pytest.approx(300 * 0.02 / 4.0, rel=1e-5)


def test_sweep_is_reproducible(data, sweep):
    from gsbp_ros.evaluation.robustness import SweepConfig, run_sweep

    _cfg, results = sweep
    again = run_sweep(
        data,
        SweepConfig(
            drop=[],
            flip=[0.4],
            noise=[0.3],
            boundary=[],
            scale=[],
            combined=[],
            seeds=2,
            holdout=4,
            engine="torch",
        ),
    )
    first = {(str(r.condition), r.seed): r for r in results}
    for r in again:
        assert r.iou3d == first[(str(r.condition), r.seed)].iou3d
        assert r.miou2d == first[(str(r.condition), r.seed)].miou2d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"drop": [], "flip": [], "noise": [], "boundary": [], "scale": [], "combined": []},
            "sweep is empty",
        ),
        ({"drop": [1.0]}, "drop levels"),
        ({"flip": [-0.1]}, "flip levels"),
        ({"boundary": [1.5]}, "whole pixels"),
        ({"scale": [0.0]}, "scale levels"),
        ({"seeds": 0}, "seeds"),
        ({"combined": [{"blur": 1.0}]}, "unknown axes"),
    ],
)
def test_bad_sweep_ranges_are_one_line_errors(change, message):
    from gsbp_ros.evaluation.robustness import SweepConfig

    cfg = SweepConfig(**change)
    with pytest.raises(GsbpError, match=message) as exc:
        cfg.check()
    assert "\n" not in str(exc.value)


def test_bad_ground_truth_and_label_maps(demo, tmp_path):
    from gsbp_ros.evaluation.labelled import load_demo, load_labelled_scene

    data = load_demo(demo)
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(3, np.int64))
    args = (demo / "scene.ply", demo / "sparse" / "0", demo / "labels" / "objects", data.names)
    with pytest.raises(GsbpError, match=f"3 entries but the scene has {data.scene.num_gaussians}"):
        load_labelled_scene(*args, short)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.full(data.scene.num_gaussians, 7, np.int64))
    with pytest.raises(GsbpError, match="holds label 7"):
        load_labelled_scene(*args, wrong)
    maps = tmp_path / "maps"
    shutil.copytree(demo / "labels" / "objects", maps)
    stem = data.cameras[2].stem
    bad = np.array(data.label_maps[stem])
    bad[0, 0] = 9
    (maps / f"{stem}.png").unlink()
    np.save(maps / f"{stem}.npy", bad)
    with pytest.raises(GsbpError, match=r"holds value 9, but only 0 .* and 1\.\.5"):
        load_labelled_scene(args[0], args[1], maps, data.names, demo / "labels.npy")
    with pytest.raises(GsbpError, match="holdout"):
        data.split(1)
