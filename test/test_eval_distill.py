"""Distillation solvers against a dense least-squares solve of the same problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsbp_ros.evaluation.distill import (
    distill_adam,
    distill_cg,
    least_squares_reference,
)


@pytest.fixture(scope="module")
def problem():
    """40 Gaussians seen by 3 views of 16x12 (4 of them outside every view), 3 channels."""
    from gsbp_ros.cameras import orbit_cameras
    from gsbp_ros.raster import compute_view_weights
    from gsbp_ros.scene import GaussianScene

    rng = np.random.default_rng(0)
    n = 40
    means = rng.uniform(-0.3, 0.3, size=(n, 3))
    means[-4:] += 50.0  # never seen
    scene = GaussianScene(
        means=torch.tensor(means, dtype=torch.float32),
        quats=torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32),
        log_scales=torch.full((n, 3), float(np.log(0.06))),
        logit_opacities=torch.tensor(rng.uniform(-1, 2, size=n), dtype=torch.float32),
        sh=torch.zeros(n, 1, 3),
    )
    cams = orbit_cameras(
        np.zeros(3), 1.5, num_views=3, width=16, height=12, fov_deg=50.0, elevations_deg=(30.0,)
    )
    weights = [compute_view_weights(scene, c, engine="torch") for c in cams]
    targets = [torch.tensor(rng.uniform(0, 1, size=(12, 16, 3)), dtype=torch.float32) for _ in cams]
    # dense W: column k is the render of Gaussian k alone
    dense = [w.render(torch.eye(n)).reshape(-1, n).numpy() for w in weights]
    return weights, targets, dense


def objective(dense, targets, f) -> float:
    f = np.asarray(f, np.float64)
    return sum(
        float(((d @ f - t.numpy().reshape(-1, 3).astype(np.float64)) ** 2).sum())
        for d, t in zip(dense, targets)
    )


def test_cg_reaches_the_least_squares_optimum(problem):
    weights, targets, dense = problem
    ref = least_squares_reference(dense, targets)
    f, its, rel = distill_cg(weights, targets, iterations=500, tol=1e-9)
    assert 1 < its <= 500 and rel < 1e-4
    best, got = objective(dense, targets, ref), objective(dense, targets, f.double())
    assert got <= best * (1 + 1e-4) + 1e-9
    # the renders of the fit are unique even where f is not
    for d in dense:
        np.testing.assert_allclose(d @ f.double().numpy(), d @ ref, atol=2e-3)
    assert (f[-4:] == 0).all()  # never seen: stays at zero


def test_adam_improves_but_never_beats_the_optimum(problem):
    weights, targets, dense = problem
    zero = objective(dense, targets, np.zeros((40, 3)))
    best = objective(dense, targets, least_squares_reference(dense, targets))
    seen_at = {}
    f = distill_adam(
        weights,
        targets,
        iterations=600,
        lr=0.05,
        checkpoints=(10, 600),
        on_checkpoint=lambda i, feats: seen_at.__setitem__(i, feats),
    )
    assert sorted(seen_at) == [10, 600]
    torch.testing.assert_close(seen_at[600], f)
    early, final = objective(dense, targets, seen_at[10]), objective(dense, targets, f)
    assert best - 1e-6 <= final < early < zero
    assert final < best + 0.2 * (zero - best)
    assert (f[-4:] == 0).all()


def test_solvers_reject_mismatched_targets(problem):
    weights, targets, _ = problem
    with pytest.raises(ValueError, match="one target per view"):
        distill_adam(weights, targets[:2], iterations=1)
    with pytest.raises(ValueError, match="does not match its view"):
        distill_cg(weights, [t[:5] for t in targets])
