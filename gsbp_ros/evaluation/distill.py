"""Feature distillation as the baseline: per-Gaussian features fitted so that their renders
match the 2D feature maps,

    min_f  Σ_v || W_v f - F_v ||²        f: [N, C],  W_v: the view's compositing weights,

through the same sparse weights that back-projection uses (the geometry stays fixed, as
when features are distilled into a trained scene). Two solvers:

- :func:`distill_adam`: what distillation methods run: Adam on one random view per
  iteration, features initialised at zero, learning rate 1e-3 and eps 1e-15 (Feature 3DGS's
  ``semantic_feature_lr`` and optimizer), 7000 iterations by default (the paper trains its
  Feature 3DGS baseline for 7000 iterations);
- :func:`distill_cg`: conjugate gradients on the normal equations
  ``(Σ W_v^T W_v) f = Σ W_v^T F_v``, i.e. the least-squares optimum distillation converges
  to (from zero, CG stays in the range of the system, so Gaussians no view sees stay zero).

:func:`least_squares_reference` solves the same problem with dense matrices (tests only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

ProgressFn = Callable[[int, int, float | None], None]


def _check(weights: Sequence, targets: Sequence[Tensor]) -> tuple[int, int]:
    if len(weights) != len(targets) or not weights:
        raise ValueError(f"need one target per view, got {len(weights)} views, {len(targets)}")
    n = weights[0].num_gaussians
    c = targets[0].shape[-1]
    for w, t in zip(weights, targets):
        if tuple(t.shape) != (w.height, w.width, c):
            raise ValueError(
                f"target {list(t.shape)} does not match its view {w.height}x{w.width}x{c}"
            )
    return n, c


def distill_adam(
    weights: Sequence,
    targets: Sequence[Tensor],
    *,
    iterations: int = 7000,
    lr: float = 1e-3,
    eps: float = 1e-15,
    seed: int = 0,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int, Tensor], None] | None = None,
    progress: ProgressFn | None = None,
) -> Tensor:
    """Fit per-Gaussian features to the views' maps with Adam.

    Args:
        weights: V :class:`~gsbp_ros.raster.ViewWeights` (``render``, ``backproject``).
        targets: V maps [H_v, W_v, C] at each view's render size.
        iterations: optimiser steps; each uses one view, drawn without replacement from a
            shuffled list that is refilled when empty (3DGS's viewpoint stack).
        lr, eps: Adam's step size and epsilon.
        seed: view order.
        checkpoints, on_checkpoint: ``on_checkpoint(i, features)`` is called after step i
            for each i in ``checkpoints`` (features detached; the caller may keep them).

    Returns:
        [N, C] float32 features.
    """
    n, c = _check(weights, targets)
    device = weights[0].device
    feats = torch.zeros(n, c, device=device, requires_grad=True)
    opt = torch.optim.Adam([feats], lr=lr, eps=eps)
    rng = np.random.default_rng(seed)
    stack: list[int] = []
    step_every = max(1, iterations // 100)
    for it in range(iterations):
        if not stack:
            stack = rng.permutation(len(weights)).tolist()
        v = stack.pop()
        w = weights[v]
        with torch.no_grad():
            residual = w.render(feats.detach()) - targets[v].to(device)
            # d/df of mean((W f - F)^2) over the view's H*W*C entries
            grad = w.backproject(residual) * (2.0 / residual.numel())
        feats.grad = grad.to(feats.dtype)
        opt.step()
        if on_checkpoint is not None and it + 1 in checkpoints:
            on_checkpoint(it + 1, feats.detach().clone())
        if progress is not None and ((it + 1) % step_every == 0 or it + 1 == iterations):
            progress(it + 1, iterations, None)
    return feats.detach()


def distill_cg(
    weights: Sequence,
    targets: Sequence[Tensor],
    *,
    iterations: int = 200,
    tol: float = 1e-6,
) -> tuple[Tensor, int, float]:
    """Least-squares optimum by conjugate gradients on the normal equations (all channels at
    once, float64).

    Returns:
        ([N, C] float32 features, iterations run, final max over channels of ||r|| / ||b||).
        Stops when ||r|| <= tol ||b|| in every channel.
    """
    n, c = _check(weights, targets)
    device = weights[0].device

    def normal(x: Tensor) -> Tensor:
        out = torch.zeros(n, c, dtype=torch.float64, device=device)
        for w in weights:
            out += w.backproject(w.render(x.float())).double()
        return out

    b = torch.zeros(n, c, dtype=torch.float64, device=device)
    for w, t in zip(weights, targets):
        b += w.backproject(t.to(device).float()).double()
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(dim=0)
    stop = (tol * b.norm(dim=0)) ** 2
    done = 0
    for done in range(1, iterations + 1):
        if bool((rr <= stop).all()):
            done -= 1
            break
        ap = normal(p)
        pap = (p * ap).sum(dim=0)
        alpha = torch.where(pap > 0, rr / pap.clamp_min(1e-300), torch.zeros_like(pap))
        x += alpha * p
        r -= alpha * ap
        rr_new = (r * r).sum(dim=0)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(1e-300), torch.zeros_like(rr))
        p = r + beta * p
        rr = rr_new
    rel = float((rr.sqrt() / b.norm(dim=0).clamp_min(1e-300)).max())
    return x.float(), done, rel


def least_squares_reference(dense: Sequence[np.ndarray], targets: Sequence[np.ndarray]):
    """Minimum-norm least-squares solution with dense matrices (numpy ``lstsq``).

    Args:
        dense: V matrices [H_v*W_v, N] (row p holds w_k(p)).
        targets: V maps [H_v, W_v, C].

    Returns:
        [N, C] float64.
    """
    a = np.concatenate([np.asarray(d, np.float64) for d in dense])
    b = np.concatenate([np.asarray(t, np.float64).reshape(-1, t.shape[-1]) for t in targets])
    return np.linalg.lstsq(a, b, rcond=None)[0]
