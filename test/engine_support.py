"""The engine on a demo folder, as several test modules start it (helpers for the tests)."""

from __future__ import annotations

import json
from pathlib import Path

from gsbp_ros.engine import EngineConfig, GsbpEngine


def demo_config(demo: Path, **overrides) -> EngineConfig:
    """The engine of a ``gsbp demo-scene`` folder on the CPU with its object label maps as
    the only feature source; ``overrides`` replace any field."""
    fields = dict(
        scene_path=str(demo / "scene.ply"),
        cameras_path=str(demo / "sparse" / "0"),
        device="cpu",
        feature_sources=["labels"],
        label_maps_dir=str(demo / "labels" / "objects"),
        label_names=json.loads((demo / "names.json").read_text())["objects"],
        output_dir=str(demo / "out"),
    )
    fields.update(overrides)
    return EngineConfig(**fields)


def started_engine(config: EngineConfig) -> GsbpEngine:
    """A quiet engine that has started and is ready (fails the test otherwise)."""
    eng = GsbpEngine(config, log=lambda m: None)
    eng.start()
    eng.check_ready()
    return eng
