"""FeatureField storage and the feature cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gsbp_ros.backproject import finalize
from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.field import FeatureField, cache_key, cameras_digest, load_or_build


def _field(n: int = 7, seed: int = 0) -> FeatureField:
    g = torch.Generator().manual_seed(seed)
    return FeatureField(
        features={
            "default": torch.randn(n, 5, generator=g),
            "clip": torch.randn(n, 3, generator=g),
        },
        weights={"default": torch.rand(n, generator=g), "clip": torch.zeros(n)},
        meta={"sources": {"clip": {"model": "x"}}},
    )


def test_save_load_round_trip_and_cli_contract_keys(tmp_path):
    f = _field()
    path = tmp_path / "f.safetensors"
    f.save(path)
    raw = load_file(str(path))
    # The CLI contract: the default source is stored as plain `features` [N, C] and `weight` [N].
    assert set(raw) == {"features", "weight", "features.clip", "weight.clip"}
    assert torch.equal(raw["features"], f.features["default"])
    g = FeatureField.load(path)
    for name in f.features:
        assert torch.equal(g.features[name], f.features[name])
        assert torch.equal(g.weights[name], f.weights[name])
    assert g.meta["sources"] == f.meta["sources"]
    assert g.seen("clip").sum() == 0


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "f.safetensors"
    _field(seed=1).save(path)
    before = path.read_bytes()
    import safetensors.torch

    def boom(tensors, filename, *a, **k):
        Path(filename).write_bytes(b"half a file")  # the write fails part-way
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        _field(seed=2).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


@pytest.mark.parametrize(
    "payload",
    [b"", b"not a safetensors file at all", b"\xff" * 64],
)
def test_load_rejects_garbage(tmp_path, payload):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(payload)
    with pytest.raises(FeatureError, match="not a valid safetensors"):
        FeatureField.load(path)


def test_load_rejects_metadata_that_is_not_an_object(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "f.safetensors"
    save_file({"features": torch.zeros(2, 3), "weight": torch.ones(2)}, str(path), {"gsbp": "[1]"})
    with pytest.raises(FeatureError, match="corrupt metadata"):
        FeatureField.load(path)


def test_inconsistent_fields_are_rejected():
    with pytest.raises(FeatureError):
        FeatureField(features={"a": torch.zeros(3, 2)}, weights={"a": torch.zeros(4)})
    with pytest.raises(FeatureError):
        FeatureField(features={"a": torch.zeros(3, 2)}, weights={"b": torch.zeros(3)})


def _cams(shift: float = 0.0) -> list[Camera]:
    K = torch.tensor([[50.0, 0, 20], [0, 60, 11], [0, 0, 1]])
    T = torch.eye(4)
    T[0, 3] = shift
    return [Camera("a.png", K, T, 40, 24)]


def test_cache_key_changes_with_every_input(tmp_path):
    scene = tmp_path / "s.ply"
    scene.write_bytes(b"scene-1")

    class Src:
        def __init__(self, rev):
            self.rev = rev

        def cache_key(self):
            return {"model": "m", "revision": self.rev}

    base = dict(scene_path=scene, cameras=_cams(), sources={"d": Src("1")}, params={"mode": "e"})
    k0 = cache_key(**base)
    assert k0 == cache_key(**base)
    assert k0 != cache_key(**{**base, "cameras": _cams(0.1)})
    assert k0 != cache_key(**{**base, "sources": {"d": Src("2")}})
    assert k0 != cache_key(**{**base, "params": {"mode": "a"}})
    scene.write_bytes(b"scene-2")
    assert k0 != cache_key(**base)
    assert cameras_digest(_cams()) != cameras_digest(_cams(1.0))


def test_load_or_build_hit_miss_and_corrupt_cache(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _field(seed=len(calls))

    f1, hit1 = load_or_build(tmp_path, "k" * 64, build, expected_sources=["default", "clip"])
    f2, hit2 = load_or_build(tmp_path, "k" * 64, build, expected_sources=["default", "clip"])
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert torch.equal(f1.features["default"], f2.features["default"])
    # A different key is a miss (and a new file).
    _, hit3 = load_or_build(tmp_path, "j" * 64, build)
    assert not hit3 and len(calls) == 2
    # A corrupted cache file is rebuilt and overwritten, never trusted.
    (path,) = tmp_path.glob("field-kkkk*.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    _, hit4 = load_or_build(tmp_path, "k" * 64, build, expected_sources=["default", "clip"])
    assert not hit4 and len(calls) == 3
    assert FeatureField.load(path).meta["cache_key"] == "k" * 64
    # A cache with the right key but the wrong Gaussian count is rebuilt too.
    _, hit5 = load_or_build(tmp_path, "k" * 64, build, num_gaussians=99)
    assert not hit5 and len(calls) == 4


def test_cache_metadata_is_json_not_pickle(tmp_path):
    f = _field()
    f.save(tmp_path / "f.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "f.safetensors"), framework="pt") as h:
        meta = json.loads(h.metadata()["gsbp"])
    assert meta["sources"]["clip"]["model"] == "x"


def test_finalize_modes():
    g = torch.Generator().manual_seed(3)
    sums = torch.randn(6, 4, generator=g, dtype=torch.float64)
    w = torch.tensor([0.0, 1.0, 2.5, 0.1, 3.0, 0.0], dtype=torch.float64)
    sums[w == 0] = 0.0
    exp = finalize(sums, w, mode="expected")
    acc = finalize(sums, w, mode="accumulated")
    assert torch.allclose(exp[1:5], (sums[1:5] / w[1:5, None]).float())
    assert torch.equal(exp[0], torch.zeros(4)) and torch.equal(exp[5], torch.zeros(4))
    assert torch.allclose(acc, sums.float())
    # Paper Sec. 3.1: after L2 normalisation both modes agree.
    assert torch.allclose(
        finalize(sums, w, mode="expected", normalize=True),
        finalize(sums, w, mode="accumulated", normalize=True),
        atol=1e-6,
    )
    with pytest.raises(ValueError):
        finalize(sums, w, mode="median")


def test_viewpoints_round_trip_and_validation(tmp_path):
    f = _field(n=7)
    f.viewpoints = torch.arange(21, dtype=torch.float32).reshape(7, 3)
    f.save(tmp_path / "v.safetensors")
    g = FeatureField.load(tmp_path / "v.safetensors")
    assert torch.equal(g.viewpoints, f.viewpoints)
    assert g.sources == f.sources  # "viewpoints" is not mistaken for a source
    with pytest.raises(FeatureError, match="viewpoints"):
        FeatureField(features=f.features, weights=f.weights, viewpoints=torch.zeros(6, 3))
