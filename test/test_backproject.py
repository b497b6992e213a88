"""Streaming back-projection against a dense oracle built from the brute-force reference."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsbp_ros.backproject import NpyFeatureMaps, backproject
from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError, FeatureError
from gsbp_ros.raster.reference import reference_weights
from gsbp_ros.scene import GaussianScene


def random_scene(n: int = 60, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        means=torch.rand(n, 3, generator=g) * 2 - 1,
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.log(torch.rand(n, 3, generator=g) * 0.15 + 0.03),
        logit_opacities=torch.randn(n, generator=g) * 2 + 1,
        sh=torch.randn(n, 4, 3, generator=g) * 0.3,
    )


def look_at(eye, target, *, name, width, height, f=30.0, cx=None, cy=None) -> Camera:
    eye, target = torch.tensor(eye, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, torch.tensor([0.0, 0.0, 1.0]))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    T = torch.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    K = torch.tensor(
        [[f, 0, cx if cx is not None else width / 2], [0, f * 1.1, cy or height / 2], [0, 0, 1]]
    )
    return Camera(name, K, T, width, height)


def cameras(k: int = 3) -> list[Camera]:
    out = []
    for i in range(k):
        a = 2 * math.pi * i / k
        out.append(
            look_at(
                [3 * math.cos(a), 3 * math.sin(a), 1.0],
                [0, 0, 0],
                name=f"v{i}.png",
                width=22 + 2 * i,
                height=16,
                cx=9.5 + i,
            )
        )
    return out


class MapSource:
    """Feature maps held in memory, at a resolution other than the views'."""

    needs_rgb = False

    def __init__(self, maps: dict[str, torch.Tensor]) -> None:
        self.maps = maps

    def cache_key(self) -> dict[str, str]:
        return {"source": "test"}

    def view_features(self, camera, rgb):
        return self.maps.get(camera.stem)


def oracle(scene, cams, maps, *, mode):
    """Σ_views W^T Up(F) from dense reference weights and F.interpolate."""
    n = scene.num_gaussians
    c = next(iter(maps.values())).shape[-1]
    num = torch.zeros(n, c, dtype=torch.float64)
    den = torch.zeros(n, dtype=torch.float64)
    for cam in cams:
        if cam.stem not in maps:
            continue
        W = reference_weights(scene, cam).to(torch.float64)  # [H*W, N]
        fmap = maps[cam.stem].permute(2, 0, 1)[None]
        up = F.interpolate(fmap, size=(cam.height, cam.width), mode="bilinear", align_corners=False)
        up = up[0].permute(1, 2, 0).reshape(-1, c).to(torch.float64)
        num += W.T @ up
        den += W.sum(0)
    if mode == "expected":
        num = torch.where(den[:, None] > 0, num / den.clamp_min(1e-300)[:, None], 0.0)
    return num.float(), den.float()


@pytest.mark.parametrize("mode", ["expected", "accumulated"])
def test_backproject_equals_dense_oracle(mode):
    scene = random_scene()
    cams = cameras()
    g = torch.Generator().manual_seed(1)
    maps = {c.stem: torch.randn(5 + i, 7, 6, generator=g) for i, c in enumerate(cams)}
    field = backproject(scene, cams, {"f": MapSource(maps)}, mode=mode, engine="torch")
    want, den = oracle(scene, cams, maps, mode=mode)
    assert (den > 0).sum() > 10, "the scene must be visible for the test to mean anything"
    torch.testing.assert_close(field.weights["f"], den, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(field.features["f"], want, atol=1e-4, rtol=1e-4)
    assert field.features["f"].shape == (scene.num_gaussians, 6)
    # Where the cameras that saw each Gaussian stood: Σ_v (Σ_p w) c_v / Σ_v Σ_p w.
    per_view = torch.stack([reference_weights(scene, c).sum(0) for c in cams])  # [V, N]
    centers = torch.stack([c.center for c in cams])  # [V, 3]
    seen = per_view.sum(0) > 0
    want_vp = (per_view.T @ centers)[seen] / per_view.sum(0)[seen, None]
    torch.testing.assert_close(field.viewpoints[seen], want_vp, atol=1e-4, rtol=1e-4)
    assert torch.all(field.viewpoints[~seen] == 0)


def test_missing_maps_are_skipped_with_a_warning(caplog):
    scene = random_scene()
    cams = cameras()
    g = torch.Generator().manual_seed(2)
    maps = {cams[0].stem: torch.randn(8, 8, 3, generator=g)}
    progress = []
    with caplog.at_level(logging.WARNING):
        field = backproject(
            scene,
            cams,
            {"f": MapSource(maps)},
            engine="torch",
            progress=lambda d, t, e: progress.append((d, t)),
        )
    assert "no feature map for 2 of 3 views" in caplog.text
    assert progress == [(1, 3), (2, 3), (3, 3)]
    want, _ = oracle(scene, cams, maps, mode="expected")
    torch.testing.assert_close(field.features["f"], want, atol=1e-4, rtol=1e-4)
    assert field.meta["sources"]["f"]["views"] == "1"


def test_bad_feature_maps_raise():
    scene = random_scene()
    cams = cameras()
    mixed = {cams[0].stem: torch.randn(4, 4, 3), cams[1].stem: torch.randn(4, 4, 5)}
    with pytest.raises(FeatureError, match="differ in channels"):
        backproject(scene, cams, {"f": MapSource(mixed)}, engine="torch")
    nan = torch.randn(4, 4, 3)
    nan[1, 2, 0] = float("nan")
    with pytest.raises(FeatureError, match="NaN"):
        backproject(scene, cams, {"f": MapSource({cams[0].stem: nan})}, engine="torch")
    with pytest.raises(FeatureError, match="no feature map for any view"):
        backproject(scene, cams, {"f": MapSource({})}, engine="torch")
    with pytest.raises(FeatureError, match=r"\[H, W, C\]"):
        backproject(scene, cams, {"f": MapSource({cams[0].stem: torch.randn(4, 4)})})


def _dist_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        scene = random_scene()
        cams = cameras(4)
        g = torch.Generator().manual_seed(5)
        maps = {c.stem: torch.randn(6, 6, 4, generator=g) for c in cams}
        field = backproject(
            scene, cams, {"f": MapSource(maps)}, engine="torch", rank=rank, world_size=world
        )
        # A source with no map on any rank is one clear error on every rank (not a KeyError
        # in the all-reduce, nor a hang).
        try:
            backproject(
                scene,
                cams,
                {"f": MapSource(maps), "none": MapSource({})},
                engine="torch",
                rank=rank,
                world_size=world,
            )
            error = ""
        except FeatureError as exc:
            error = str(exc)
        if rank == 0:
            torch.save(
                {"features": field.features["f"], "weight": field.weights["f"], "error": error},
                out,
            )
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_dist_worker, args=(2, port, out), nprocs=2, join=True)
    sharded = torch.load(out, weights_only=True)
    scene = random_scene()
    cams = cameras(4)
    g = torch.Generator().manual_seed(5)
    maps = {c.stem: torch.randn(6, 6, 4, generator=g) for c in cams}
    single = backproject(scene, cams, {"f": MapSource(maps)}, engine="torch")
    torch.testing.assert_close(sharded["weight"], single.weights["f"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sharded["features"], single.features["f"], atol=1e-5, rtol=1e-5)
    assert "none had no feature map for any view" in sharded["error"]


def test_render_scale_must_be_positive():
    with pytest.raises(CameraError, match="render_scale"):
        backproject(random_scene(), cameras(), {"f": MapSource({})}, render_scale=0.0)


def test_npy_maps_unreadable_files_are_feature_errors(tmp_path):
    cam = cameras(1)[0]
    (tmp_path / f"{cam.stem}.npy").write_bytes(b"")  # e.g. an interrupted export
    maps = NpyFeatureMaps(tmp_path)
    with pytest.raises(FeatureError, match="cannot read feature map"):
        maps.view_features(cam, None)
    np.save(tmp_path / f"{cam.stem}.npy", np.zeros((3, 4, 2), dtype=np.int32))
    with pytest.raises(FeatureError, match="must be float"):
        maps.view_features(cam, None)
    np.save(tmp_path / f"{cam.stem}.npy", np.ones((3, 4, 2), dtype=">f8"))
    fmap = maps.view_features(cam, None)
    assert fmap.dtype == torch.float32 and torch.equal(fmap, torch.ones(3, 4, 2))
