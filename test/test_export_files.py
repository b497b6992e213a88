"""SaveRegion's files for real: no silent overwrite, long names, the process umask."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from gsbp_ros.errors import QueryError
from gsbp_ros.export import export_selection
from gsbp_ros.scene import GaussianScene


def _scene(n: int = 30) -> GaussianScene:
    g = torch.Generator().manual_seed(2)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 3.0,
        logit_opacities=torch.randn(n, generator=g),
        sh=torch.randn(n, 1, 3, generator=g),
    )


def test_overwrite_false_refuses_and_keeps_the_file(tmp_path):
    scene = _scene()
    path, count = export_selection(scene, np.arange(5), "a.ply", allowed_dir=tmp_path)
    before = path.read_bytes()
    with pytest.raises(QueryError, match="exists: ask for overwrite"):
        export_selection(scene, np.arange(9), "a.ply", allowed_dir=tmp_path, overwrite=False)
    assert path.read_bytes() == before
    assert GaussianScene.load(path).num_gaussians == count == 5
    _, count = export_selection(scene, np.arange(9), "a.ply", allowed_dir=tmp_path)
    assert count == 9 and GaussianScene.load(path).num_gaussians == 9
    new, count = export_selection(
        scene, np.arange(2), "new.ply", allowed_dir=tmp_path, overwrite=False
    )
    assert GaussianScene.load(new).num_gaussians == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ply", "new.ply"]


def test_a_250_character_name_under_the_process_umask(tmp_path):
    name = "s" * 246 + ".ply"
    old = os.umask(0o022)
    try:
        path, _ = export_selection(_scene(), np.arange(3), name, allowed_dir=tmp_path)
    finally:
        os.umask(old)
    assert path.name == name and GaussianScene.load(path).num_gaussians == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
