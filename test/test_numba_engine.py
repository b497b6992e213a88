"""The compiled CPU engine: bounded memory (row-band groups), threads, fallback.

Its exactness against the brute-force reference is tested with the other engines in
test_raster.py; here, what is particular to it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from gsbp_ros.demo_scene import make_demo_scene
from gsbp_ros.raster import compute_view_weights
from gsbp_ros.raster.numba_engine import NumbaViewWeights, plan_bands, project_gaussians_numba


@pytest.fixture(scope="module")
def demo_view():
    demo = make_demo_scene()
    camera = demo.cameras(num_views=4, width=96, height=72)[1]
    return demo.scene, camera


def test_plan_bands_respects_the_budget_and_covers_every_row():
    rows = np.array([0, 5, 7, 0, 3, 20, 1, 0, 9], dtype=np.int64)
    for threads in (1, 2, 4):
        for budget in (1, 7, 12, 1000):
            bands, groups = plan_bands(rows, threads, budget)
            covered = [y for lo, hi, _ in bands for y in range(lo, hi)]
            assert set(covered) >= {y for y in range(rows.size) if rows[y] > 0}
            assert len(covered) == len(set(covered))  # disjoint
            for lo, hi, c in bands:
                assert c == rows[lo:hi].sum() > 0
            assert sorted(b for g in groups for b in g) == list(range(len(bands)))
            for g in groups:
                total = sum(bands[b][2] for b in g)
                assert total <= budget or len(g) == 1
    assert plan_bands(np.zeros(4, dtype=np.int64), 2, 10) == ([], [])


@pytest.mark.parametrize("budget", [1, 997, 20_000])
def test_results_do_not_depend_on_the_pair_budget(demo_view, budget):
    """A view over its budget is recomputed group by group for every pass; every result
    must equal the view computed in one piece, whatever the call order."""
    scene, camera = demo_view
    whole = compute_view_weights(scene, camera, engine="numba")
    assert whole.fits_budget
    split = compute_view_weights(scene, camera, engine="numba", max_pairs=budget)
    assert split.num_groups > 1
    g = torch.Generator().manual_seed(budget)
    feats = torch.randn(11, 14, 6, generator=g)
    values = torch.randn(scene.num_gaussians, 3, generator=g)
    # backproject first (it fills the weight sums on its way), then the rest
    torch.testing.assert_close(split.backproject(feats), whole.backproject(feats))
    torch.testing.assert_close(split.weight_sum(), whole.weight_sum())
    torch.testing.assert_close(split.render(values), whole.render(values))
    torch.testing.assert_close(split.alpha(), whole.alpha())
    a, b = split.to_sparse(), whole.to_sparse()
    assert torch.equal(a.pixel_ids, b.pixel_ids) and torch.equal(a.gaussian_ids, b.gaussian_ids)
    assert torch.equal(a.weights, b.weights)
    # weight_sum alone on a fresh split view walks every group once
    fresh = compute_view_weights(scene, camera, engine="numba", max_pairs=budget)
    torch.testing.assert_close(fresh.weight_sum(), whole.weight_sum())


def test_candidates_bound_the_pairs(demo_view):
    scene, camera = demo_view
    w = compute_view_weights(scene, camera, engine="numba")
    assert 0 < w.nnz <= w.candidates


def test_concurrent_views_from_several_threads(demo_view):
    """The node computes weights for a request while start-up may still be lifting: views
    computed at the same time from different threads must not disturb each other."""
    scene, _ = demo_view
    cams = make_demo_scene().cameras(num_views=6, width=80, height=60)
    feats = torch.randn(9, 12, 5, generator=torch.Generator().manual_seed(1))
    expected = [compute_view_weights(scene, c, engine="numba").backproject(feats) for c in cams]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = compute_view_weights(scene, cams[i], engine="numba").backproject(feats)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, want in enumerate(expected):
        torch.testing.assert_close(results[i], want)


def test_one_thread_gives_the_same_weights(demo_view):
    scene, camera = demo_view
    many = compute_view_weights(scene, camera, engine="numba").to_sparse()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = compute_view_weights(scene, camera, engine="numba").to_sparse()
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.pixel_ids, many.pixel_ids)
    assert torch.equal(one.weights, many.weights)


def test_projection_feeds_numba_view_weights(demo_view):
    scene, camera = demo_view
    proj = project_gaussians_numba(scene, camera)
    with pytest.raises(ValueError, match="pair_budget"):
        NumbaViewWeights(proj, pair_budget=0)


def test_missing_numba_falls_back_to_torch_with_one_warning(tmp_path: Path):
    """Where numba cannot import, 'auto' runs the torch engine and says why, once; asking for
    'numba' explicitly is a clear error."""
    script = tmp_path / "no_numba.py"
    script.write_text(
        "import sys, logging\n"
        "sys.modules['numba'] = None  # makes 'import numba' raise ImportError\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "from gsbp_ros.demo_scene import make_demo_scene\n"
        "from gsbp_ros.raster import compute_view_weights, resolve_engine, EngineUnavailableError\n"
        "demo = make_demo_scene()\n"
        "cam = demo.cameras(num_views=2, width=32, height=24)[0]\n"
        "print('engine', resolve_engine('auto', demo.scene))\n"
        "for _ in range(3):\n"
        "    compute_view_weights(demo.scene, cam)\n"
        "try:\n"
        "    compute_view_weights(demo.scene, cam, engine='numba')\n"
        "except EngineUnavailableError as exc:\n"
        "    print('explicit:', exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "engine torch" in proc.stdout
    assert "explicit: the numba engine cannot run" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "'numba' is unavailable" in warnings[0], proc.stderr


def test_depth_order_is_a_stable_sort_of_the_valid_depths():
    from gsbp_ros.raster.numba_engine import _kernels

    rng = np.random.default_rng(0)
    depths = rng.uniform(0.0, 5.0, 5000).astype(np.float32)
    depths[::7] = 2.0  # ties keep index order
    depths[3] = -0.0  # on the near plane at 0: sorts with +0.0, first
    depths[5] = 0.0
    depths[11] = 1e30
    valid = rng.random(5000) > 0.1
    valid[[3, 5, 11]] = True
    order = _kernels().depth_order(valid, depths)
    ids = torch.from_numpy(valid).nonzero().flatten()
    want = ids[torch.sort(torch.from_numpy(depths)[ids], stable=True).indices]
    assert np.array_equal(order, want.numpy())
    assert order[0] == 3 and order[1] == 5
