"""Contrastive identity codes: many labels in few channels (paper Eq. 8-10).

One-hot codes need one channel per label; with hundreds of labels the back-projected field
gets large. The paper instead learns L codes E [L, D] (D < L) together with a linear
decoder, with a classification loss on noisy codes plus an orthogonality penalty:

    loss = CE(decoder(E + noise), labels) + || E E^T - I ||_F

We keep each code on the unit sphere (E = rows of normalize(raw)), so the diagonal of
E E^T is exactly 1 and the Frobenius term only penalises cross-talk between codes, and the
decoder has no bias, so its argmax ignores the overall scale of a back-projected feature
(expected-mode features of partly unlabelled Gaussians are shorter than a code).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbp_ros.errors import FeatureError


def train_identity_codes(
    num_labels: int,
    dim: int,
    *,
    steps: int = 300,
    seed: int = 0,
    noise_std: float = 0.1,
    lr: float = 0.05,
    samples_per_label: int = 8,
) -> tuple[Tensor, nn.Linear]:
    """Learn ``num_labels`` unit-norm codes in ``dim`` channels and their decoder.

    Deterministic for a given ``seed``. Runs on the CPU with one thread: the matrices are
    tiny, and OpenMP threads competing with other processes made 300 steps take 15 s
    instead of 0.3 s here; one thread also makes the result independent of the core count.

    Args:
        num_labels: L, number of labels (may exceed ``dim``).
        dim: D, channels per code.
        steps: Adam steps.
        seed: seeds the initialisation and the noise (a private generator; the global
            torch RNG is left alone).
        noise_std: std of the Gaussian noise added to codes during training (codes have
            unit norm), which buys robustness to blending at object borders.
        lr: Adam learning rate.
        samples_per_label: noisy copies of each code per step.

    Returns:
        codes: [L, D] float32, unit L2 norm per row.
        decoder: ``nn.Linear(D, L, bias=False)`` in eval mode, frozen; ``decoder(f)`` gives
            [N, L] logits, argmax the label.
    """
    if num_labels < 1 or dim < 1:
        raise FeatureError(
            f"identity codes need num_labels >= 1 and dim >= 1, got {num_labels}, {dim}"
        )
    if steps < 0:
        raise FeatureError(f"identity code training steps must be >= 0, got {steps}")
    # Training needs autograd even when the caller runs under no_grad / inference_mode.
    with _one_thread(), torch.inference_mode(False), torch.enable_grad():
        return _train(num_labels, dim, steps, seed, noise_std, lr, samples_per_label)


def _train(
    num_labels: int,
    dim: int,
    steps: int,
    seed: int,
    noise_std: float,
    lr: float,
    samples_per_label: int,
) -> tuple[Tensor, nn.Linear]:
    gen = torch.Generator().manual_seed(int(seed))
    raw = nn.Parameter(torch.randn(num_labels, dim, generator=gen))
    # skip_init: nn.Linear's own random init would draw from the global RNG.
    decoder = nn.utils.skip_init(nn.Linear, dim, num_labels, bias=False)
    with torch.no_grad():
        # Start the decoder at nearest-code matching: already a perfect clean decoder.
        decoder.weight.copy_(F.normalize(raw, dim=-1))
    opt = torch.optim.Adam([raw, *decoder.parameters()], lr=lr)
    labels = torch.arange(num_labels).repeat(samples_per_label)
    eye = torch.eye(num_labels)
    for _ in range(steps):
        codes = F.normalize(raw, dim=-1)
        noise = noise_std * torch.randn(labels.numel(), dim, generator=gen)
        ce = F.cross_entropy(decoder(codes[labels] + noise), labels)
        ortho = torch.linalg.matrix_norm(codes @ codes.T - eye)
        loss = ce + ortho
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    codes = F.normalize(raw.detach(), dim=-1).contiguous()
    decoder.requires_grad_(False)
    decoder.eval()
    return codes, decoder


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
