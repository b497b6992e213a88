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


def _rewrite(path: Path, change) -> None:
    """Rewrite a saved field with ``change(tensors, metadata)`` applied, keeping the stored
    digest: an edit that leaves the file readable."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as h:
        meta = dict(h.metadata())
        tensors = {k: h.get_tensor(k) for k in h.keys()}  # noqa: SIM118
    change(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def _swap_channels(tensors, meta) -> None:
    t = tensors["features.clip"]
    tensors["features.clip"] = t[:, [1, 0, 2]].contiguous()


def _edit_metadata(tensors, meta) -> None:
    doc = json.loads(meta["gsbp"])
    doc["sources"]["clip"]["model"] = "y"
    meta["gsbp"] = json.dumps(doc, sort_keys=True)


def _rename_tensor(tensors, meta) -> None:
    tensors["features.other"] = tensors.pop("features.clip")
    tensors["weight.other"] = tensors.pop("weight.clip")


def _flip_one_value(tensors, meta) -> None:
    tensors["weight"][3] += 1.0


@pytest.mark.parametrize("edit", [_swap_channels, _edit_metadata, _rename_tensor, _flip_one_value])
def test_edits_that_keep_the_file_readable_fail_the_digest(tmp_path, edit):
    path = tmp_path / "f.safetensors"
    _field().save(path)
    FeatureField.load(path, require_digest=True)  # intact: fine
    _rewrite(path, edit)
    with pytest.raises(FeatureError, match="does not match its digest"):
        FeatureField.load(path)


def test_a_field_without_digest_loads_but_the_cache_does_not_trust_it(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"features": torch.ones(3, 2), "weight": torch.ones(3)}, str(path))
    assert FeatureField.load(path).num_gaussians == 3  # gsbp backproject's contract
    with pytest.raises(FeatureError, match="no digest"):
        FeatureField.load(path, require_digest=True)


def test_digest_algorithms_blake3_and_the_sha256_fallback(tmp_path, monkeypatch):
    import gsbp_ros.field as field_mod

    tensors = {"features": torch.randn(50, 7), "weight": torch.rand(50)}
    fast = field_mod.field_digest(tensors, "{}", "blake3")
    slow = field_mod.field_digest(tensors, "{}", "sha256")
    assert fast.startswith("blake3:") and slow.startswith("sha256:")
    assert field_mod.field_digest(dict(reversed(tensors.items())), "{}", "blake3") == fast
    assert field_mod.field_digest(tensors, "{ }", "blake3") != fast  # metadata counts
    _field().save(tmp_path / "b3.safetensors")  # blake3 is installed here: preferred
    monkeypatch.setattr(field_mod, "_blake3", lambda: None)  # a machine without blake3
    assert field_mod.field_digest(tensors, "{}") == slow
    _field().save(tmp_path / "sha.safetensors")
    FeatureField.load(tmp_path / "sha.safetensors", require_digest=True)
    with pytest.raises(FeatureError, match="blake3"):  # cannot check it: not trusted
        FeatureField.load(tmp_path / "b3.safetensors")


def test_tampered_cache_is_rebuilt_with_a_warning(tmp_path):
    calls, warnings = [], []

    def build():
        calls.append(1)
        return _field(seed=5)

    good, _ = load_or_build(tmp_path, "t" * 64, build, warn=warnings.append)
    (path,) = tmp_path.glob("field-tttt*.safetensors")
    _rewrite(path, _swap_channels)  # "mug" would select the wrong Gaussians
    rebuilt, hit = load_or_build(tmp_path, "t" * 64, build, warn=warnings.append)
    assert not hit and len(calls) == 2
    assert len(warnings) == 1 and "does not match its digest" in warnings[0]
    assert "rebuilding" in warnings[0]
    assert torch.equal(rebuilt.features["clip"], good.features["clip"])
    _, hit = load_or_build(tmp_path, "t" * 64, build, warn=warnings.append)
    assert hit and len(calls) == 2  # the rewritten cache is trusted again


KILLED_CACHE_WRITER = """
import sys, torch, safetensors.torch
from pathlib import Path
from gsbp_ros.field import FeatureField, load_or_build

def half_then_hang(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"\\0" * 4096)  # half of a cache file
    print("writing", flush=True)
    import time; time.sleep(600)  # kill -9 arrives here

safetensors.torch.save_file = half_then_hang
field = FeatureField(features={"default": torch.ones(4, 2)}, weights={"default": torch.ones(4)})
load_or_build(sys.argv[1], "k" * 64, lambda: field)
"""


def test_kill_9_during_a_cache_write_leaves_nothing_trusted_or_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CACHE_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"  # blocks until written or exited
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".gsbp-tmp-")  # debris, no cache file
    calls = []

    def build():
        calls.append(1)
        return _field(n=4)

    _, hit = load_or_build(tmp_path, "k" * 64, build)  # the next start
    assert not hit and calls == [1]
    assert [p.name for p in tmp_path.iterdir()] == [f"field-{'k' * 24}.safetensors"]
    assert FeatureField.load(tmp_path / f"field-{'k' * 24}.safetensors", require_digest=True)
