"""The evaluation's label lifting (weights reused across runs) against the package's own
pipeline: backproject() for the field, GsbpEngine for 3D selections and Eq. 7 masks. If label
lifting or the label query rule changes, these fail until evaluation follows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_support import small_demo_folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return small_demo_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def data(demo):
    from gsbp_ros.evaluation.labelled import load_demo

    return load_demo(demo)


@pytest.fixture(scope="module")
def engine(demo, data):
    from gsbp_ros.engine import EngineConfig, GsbpEngine

    e = GsbpEngine(
        EngineConfig(
            scene_path=str(demo / "scene.ply"),
            cameras_path=str(demo / "sparse" / "0"),
            feature_sources=["labels"],
            label_maps_dir=str(demo / "labels" / "objects"),
            label_names=data.names,
            device="cpu",
            engine="torch",
            output_dir=str(demo),
        ),
        log=lambda m: None,
    )
    e.start()
    e.check_ready()
    return e


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_lift_with_reused_weights_equals_backproject(data, scale):
    from gsbp_ros.backproject import MODES, backproject, finalize
    from gsbp_ros.evaluation.lifting import LabelMapFiles, WeightBank, lift

    bank = WeightBank(data.scene, engine="torch")
    views = data.cameras[1:]
    with LabelMapFiles(data.names) as files:
        source = files.source({c.stem: data.label_maps[c.stem] for c in views})
        for _ in range(2):  # the second pass reuses the stored weights
            sums, weight, used = lift(bank, views, source, scale=scale)
        refs = {
            mode: backproject(
                data.scene,
                views,
                {"labels": source},
                mode=mode,
                engine="torch",
                render_scale=scale,
            )
            for mode in MODES
        }
    assert used == len(views) and len(bank._weights) == len(views)
    for mode, field in refs.items():
        torch.testing.assert_close(weight.float(), field.weights["labels"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(
            finalize(sums, weight, mode=mode), field.features["labels"], rtol=1e-5, atol=1e-6
        )


def test_selections_and_2d_masks_equal_the_engine(data, engine):
    from gsbp_ros.backproject import finalize
    from gsbp_ros.evaluation.lifting import (
        LabelMapFiles,
        WeightBank,
        label_masks_2d,
        lift,
        select_label,
    )

    bank = WeightBank(data.scene, engine="torch")
    with LabelMapFiles(data.names) as files:
        source = files.source(data.label_maps)
        sums, weight, _ = lift(bank, data.cameras, source)
        feats = finalize(sums, weight)
        for name in data.names:
            mine = select_label(source, feats, weight > 0, name)
            sel = engine.segment_text([name], [], 0.0)
            theirs = np.zeros(data.scene.num_gaussians, bool)
            theirs[sel.indices] = True
            assert mine.sum() > 50
            np.testing.assert_array_equal(mine, theirs)
        cam = data.cameras[3]
        masks = label_masks_2d(bank.get(cam), source, feats, data.names)
        for name in data.names:
            ref, _ = engine.text_mask_2d([name], [], 0.0, cam)
            np.testing.assert_array_equal(masks[name], ref)
        assert sum(m.sum() for m in masks.values()) > 0.5 * cam.width * cam.height


def test_label_map_files_are_real_files_and_cleaned_up(data):
    from gsbp_ros.evaluation.lifting import LabelMapFiles

    with LabelMapFiles(data.names) as files:
        first = files.source({"a": np.ones((2, 2), np.int64)})
        assert (first.folder / "a.npy").is_file()
        second = files.source({"b": np.zeros((2, 2), np.int64)})
        assert not first.folder.exists() and (second.folder / "b.npy").is_file()
        root = files._root
    assert not root.exists()
