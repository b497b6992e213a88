"""Shared by the test_eval_*.py files: one small demo scene per test session, on disk."""

from __future__ import annotations

from pathlib import Path

import pytest


def small_demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo scene of ~6k Gaussians, 8 views of 64x48 (written once per session)."""
    from gsbp_ros.demo_scene import write_demo_scene

    out = tmp_path_factory.getbasetemp() / "eval_small_demo"
    if not (out / "names.json").is_file():
        write_demo_scene(out, num_views=8, width=64, height=48, density=0.3, engine="torch")
    return out
