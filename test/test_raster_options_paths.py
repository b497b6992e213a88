"""Raster options travel from node parameters and CLI flags to the engines and into the
feature-field cache key (a field lifted with other settings is another field)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_support import demo_config, started_engine

from gsbp_ros.demo_scene import write_demo_scene
from gsbp_ros.engine import GsbpEngine
from gsbp_ros.nodes.params import PARAMS, check_value, engine_config
from gsbp_ros.raster import RasterOptions


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo_scene(out, num_views=4, width=64, height=48, density=0.3)
    return out


def _start(demo: Path, cache: Path, raster: RasterOptions) -> GsbpEngine:
    return started_engine(demo_config(demo, cache_dir=str(cache), raster=raster))


def test_raster_options_are_part_of_the_cache_key(demo, tmp_path):
    classic = RasterOptions()
    aa = RasterOptions(rasterize_mode="antialiased", eps2d=0.1)
    a = _start(demo, tmp_path, classic)
    assert not a.status().cache_hit
    assert _start(demo, tmp_path, classic).status().cache_hit
    b = _start(demo, tmp_path, aa)
    assert not b.status().cache_hit  # other options: rebuilt, never the classic field
    assert not torch.allclose(a.field.weights["labels"], b.field.weights["labels"], atol=1e-4)
    assert _start(demo, tmp_path, aa).status().cache_hit
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_node_parameters_build_the_raster_options():
    values = {p.name: p.default for p in PARAMS}
    assert engine_config(values).raster == RasterOptions()
    values.update(rasterize_mode="antialiased", eps2d=0.1, near_plane=0.2, far_plane=50.0)
    values.update(max_pairs=1000, raster_engine="numba")
    cfg = engine_config(values)
    assert cfg.raster == RasterOptions(
        rasterize_mode="antialiased", eps2d=0.1, near_plane=0.2, far_plane=50.0
    )
    assert cfg.max_pairs == 1000 and cfg.engine == "numba"
    assert check_value("rasterize_mode", "fancy")
    assert check_value("eps2d", -0.5)
    assert check_value("raster_engine", "cuda")
    assert check_value("far_plane", float("inf"))
    assert not check_value("raster_engine", "gsplat")
