"""One benchmark measurement, run in a process of its own so that its peak memory is its own.

    python -m gsbp_ros.bench.worker '{"method": "numba", "gaussians": 1000000, ...}'

prints one JSON line with the per-view times and the peak memory. Methods:

- ``numba``, ``torch``, ``gsplat``: our engines, one view = weights + back-projection of the
  map into a float32 [N, C] accumulator + weight sums (what the streaming lift does per view);
- ``paper``: the paper's method, autograd through a rasterizer (CPU: plain-torch tile
  compositor; CUDA: ``gsplat.rasterization`` with ``channel_chunk=32``), on the map
  upsampled to [H, W, C];
- ``lift``: ``gsbp_ros.backproject.backproject`` over ``views`` views end to end.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

import torch

from gsbp_ros.bench.scenes import bench_cameras, bench_scene


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def run(spec: dict) -> dict:
    device = torch.device(spec.get("device", "cpu"))
    method = spec["method"]
    channels = int(spec.get("channels", 384))
    map_h, map_w = spec.get("map", [34, 46])
    scene = bench_scene(int(spec["gaussians"])).to(device)
    cams = bench_cameras(int(spec["width"]), int(spec["height"]), int(spec["views"]) + 1)
    g = torch.Generator(device=device).manual_seed(0)
    fmap = torch.randn(map_h, map_w, channels, generator=g, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_rss = _peak_rss_gb()
    out: dict = {
        "gaussians": scene.num_gaussians,
        "device": str(device),
        "load_before": os.getloadavg()[0],  # other work on the machine skews times
    }
    if method == "lift":
        out.update(_lift(scene, cams[1:], fmap, device, spec))
    elif method == "precision":
        out.update(_precision(scene, cams, fmap, device))
    else:
        view = _view_fn(method, scene, fmap, device, spec, out)
        t0 = time.perf_counter()
        view(cams[0])  # warm-up: JIT kernels, caches, allocator
        _sync(device)
        out["warmup_s"] = time.perf_counter() - t0
        times = []
        for cam in cams[1:]:
            _sync(device)
            t0 = time.perf_counter()
            view(cam)
            _sync(device)
            times.append(time.perf_counter() - t0)
        out["seconds"] = times
        out["median_s"] = statistics.median(times)
    out["peak_rss_gb"] = _peak_rss_gb()
    out["rss_before_gb"] = base_rss
    if device.type == "cuda":
        out["gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out


def _view_fn(method, scene, fmap, device, spec, out):
    from gsbp_ros.raster import compute_view_weights

    n, c = scene.num_gaussians, fmap.shape[2]
    if method in ("numba", "torch", "gsplat"):
        sums = torch.zeros(n, c, device=device)

        def view(cam):
            w = compute_view_weights(scene, cam.to_device(device), engine=method)
            w.backproject_into([fmap], [sums])
            w.weight_sum()
            out["nnz"] = w.nnz

        return view
    if method == "paper":
        chunks = spec.get("max_chunks")
        out["chunks_total"] = -(-c // 32)
        out["chunks_measured"] = min(chunks or out["chunks_total"], out["chunks_total"])
        if device.type == "cuda":
            from gsbp_ros.raster.paper_baseline import GsplatAutogradWeights

            def view(cam):
                w = GsplatAutogradWeights(scene, cam.to_device(device), channel_chunk=32)
                w.backproject(fmap if chunks is None else fmap[..., : 32 * chunks])
                w.weight_sum()

            return view
        from gsbp_ros.raster.paper_baseline import torch_autograd_backproject

        def view(cam):
            torch_autograd_backproject(scene, cam, fmap, max_chunks=chunks)

        return view
    raise ValueError(f"unknown method {method!r}")


def _lift(scene, cams, fmap, device, spec) -> dict:
    from gsbp_ros.backproject import backproject

    class RandomMaps:
        """The same [H', W', C] map for every view (the lift's cost does not depend on it)."""

        needs_rgb = False

        def view_features(self, camera, rgb):
            return fmap

    warm = bench_cameras(cams[0].width, cams[0].height, 1)
    backproject(scene, warm, {"f": RandomMaps()}, device=device, engine=spec.get("engine", "auto"))
    _sync(device)
    t0 = time.perf_counter()
    backproject(scene, cams, {"f": RandomMaps()}, device=device, engine=spec.get("engine", "auto"))
    _sync(device)
    total = time.perf_counter() - t0
    return {"total_s": total, "views": len(cams), "median_s": total / len(cams)}


def _precision(scene, cams, fmap, device) -> dict:
    """float32 accumulators (what the lift uses) against float64 ones, same views and maps.

    Each view gets its own map (the base map rolled), so that the sums do not simply scale.
    """
    from gsbp_ros.backproject import finalize
    from gsbp_ros.raster import compute_view_weights

    n, c = scene.num_gaussians, fmap.shape[2]
    s32 = torch.zeros(n, c, device=device)
    s64 = torch.zeros(n, c, device=device, dtype=torch.float64)
    w64 = torch.zeros(n, device=device, dtype=torch.float64)
    for i, cam in enumerate(cams):
        view_map = torch.roll(fmap, shifts=i, dims=2)
        w = compute_view_weights(scene, cam.to_device(device))
        w.backproject_into([view_map], [s32])
        s64 += w.backproject(view_map).double()
        w64 += w.weight_sum().double()
    f32 = finalize(s32, w64)
    f64 = finalize(s64, w64).double()
    seen = w64 > 0
    err = (f32.double() - f64)[seen].abs().max()
    scale = f64[seen].abs().max()
    return {"views": len(cams), "max_abs_error": float(err), "max_value": float(scale)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
