"""Latency of grasp planning on a region of ~3,000 Gaussians, for ``gsbp bench``.

:func:`grasp_bench_rows` plans grasps on the demo scene's whole mug (3,072 Gaussians) with
the default gripper and options, in the demo scene (~20k Gaussians) and, unless ``quick``,
in the same scene inside a room of extra Gaussians (1M in all: walls and floor around the
table, so the mug's neighbourhood is unchanged and only the scene's size grows). Times are
medians over repeats after a warm-up: wall clock and this thread's CPU time (the latter is
what the planner costs when other processes share the cores). The collision model (k-d tree)
is built once per scene, at the first request; its time is reported apart.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _room(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """n flat, opaque Gaussians on the floor and walls of a 6 x 6 x 3 m room around the
    table (floor 0.8 m below the table top)."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 5, n)  # floor, 4 walls
    u, v = rng.uniform(-3.0, 3.0, n), rng.uniform(0.0, 3.0, n)
    means = np.empty((n, 3))
    normals = np.zeros((n, 3))
    floor = side == 0
    means[floor] = np.c_[u[floor], rng.uniform(-3.0, 3.0, floor.sum()), np.full(floor.sum(), -0.8)]
    normals[floor] = [0.0, 0.0, 1.0]
    for k, (axis, sign) in enumerate(((0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0)), start=1):
        m = side == k
        pos = np.zeros((m.sum(), 3))
        pos[:, axis] = sign * 3.0
        pos[:, 1 - axis] = u[m]
        pos[:, 2] = v[m] - 0.8
        means[m] = pos
        normals[m, axis] = -sign
    # quaternion taking +z to the normal (rotation about z x n), scales thin along it
    axis = np.cross(np.tile([0.0, 0.0, 1.0], (n, 1)), normals)
    s = np.linalg.norm(axis, axis=1, keepdims=True)
    c = normals[:, 2:3]
    half = np.arctan2(s, c) / 2
    unit = np.where(s > 0, axis / np.maximum(s, 1e-12), [1.0, 0.0, 0.0])
    quats = np.c_[np.cos(half), np.sin(half) * unit]
    log_scales = np.log(np.tile([0.004, 0.004, 0.0004], (n, 1)))
    return means, quats, log_scales, np.full(n, 0.95)


def _median_times(fn, repeat: int) -> tuple[float, float]:
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(wall), statistics.median(cpu)


def grasp_bench_rows(*, quick: bool = False, repeat: int = 7) -> list[dict[str, str]]:
    """One markdown-table row per scene size: region size, candidates, feasible, grasps,
    collision-model build time, planning latency (wall and CPU)."""
    import torch

    from gsbp_ros.demo_scene import make_demo_scene
    from gsbp_ros.grasps import CollisionModel, GraspOptions, plan_grasps

    demo = make_demo_scene()
    sc = demo.scene
    base = (
        sc.means.numpy().astype(np.float64),
        sc.quats.numpy().astype(np.float64),
        sc.log_scales.numpy().astype(np.float64),
        torch.sigmoid(sc.logit_opacities).numpy().astype(np.float64),
    )
    mug = np.flatnonzero(demo.object_labels.numpy() == demo.object_names.index("mug"))
    sizes = [0] if quick else [0, 1_000_000 - sc.num_gaussians]
    options = GraspOptions()
    rows = []
    for extra in sizes:
        arrays = base
        if extra:
            arrays = tuple(np.concatenate([a, b]) for a, b in zip(base, _room(extra)))
        t0 = time.perf_counter()
        model = CollisionModel.from_gaussians(*arrays)
        model.near(model.means[:1], 0.0)  # builds the k-d tree
        build = time.perf_counter() - t0
        grasps = plan_grasps(model, mug, options=options)
        wall, cpu = _median_times(lambda m=model: plan_grasps(m, mug, options=options), repeat)
        rows.append(
            {
                "scene Gaussians": str(arrays[0].shape[0]),
                "region Gaussians": str(mug.size),
                "candidates": str(grasps.stats["candidates"]),
                "feasible": str(grasps.stats["feasible"]),
                "grasps": str(len(grasps)),
                "collision model build (s)": f"{build:.2f}",
                "plan, wall (ms)": f"{1000 * wall:.0f}",
                "plan, thread CPU (ms)": f"{1000 * cpu:.0f}",
            }
        )
    return rows


__all__ = ["grasp_bench_rows"]
