"""Real spherical harmonics, degrees 0..4, in the 3DGS (Inria) / gsplat convention.

Written in the closed form of the Inria 3DGS ``sh_utils.eval_sh`` (constants C0..C4), so it
is an independent formulation of what gsplat evaluates with Sloan's recurrences
(``gsplat.cuda._torch_impl._eval_sh_bases_fast``); the tests hold the two equal. Both use the
same basis order and signs (band 1 is ``-C1 y, C1 z, -C1 x``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
C4 = (
    2.5033429417967046,
    -1.7701307697799304,
    0.9461746957575601,
    -0.6690465435572892,
    0.10578554691520431,
    -0.6690465435572892,
    0.47308734787878004,
    -1.7701307697799304,
    0.6258357354491761,
)


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions at unit directions.

    Args:
        degree: 0..4.
        dirs: [..., 3] unit vectors.

    Returns:
        [..., (degree + 1)^2] basis values, DC first.
    """
    if not 0 <= degree <= 4:
        raise ValueError(f"SH degree must be in 0..4, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            C2[0] * xy,
            C2[1] * yz,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * xz,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    if degree >= 4:
        out += [
            C4[0] * xy * (xx - yy),
            C4[1] * yz * (3 * xx - yy),
            C4[2] * xy * (7 * zz - 1),
            C4[3] * yz * (7 * zz - 3),
            C4[4] * (zz * (35 * zz - 30) + 3),
            C4[5] * xz * (7 * zz - 3),
            C4[6] * (xx - yy) * (7 * zz - 1),
            C4[7] * xz * (xx - 3 * yy),
            C4[8] * (xx * (xx - 3 * yy) - yy * (3 * xx - yy)),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(sh: Tensor, dirs: Tensor, *, degree: int | None = None) -> Tensor:
    """Evaluate SH coefficients along view directions (gsplat ``spherical_harmonics``).

    Args:
        sh: [N, K, 3] coefficients, K = (deg + 1)^2, DC first.
        dirs: [N, 3] directions, any length (normalised here; zero stays zero).
        degree: bands to use (default: all that ``sh`` holds).

    Returns:
        [N, 3] the raw SH sum, without the +0.5 offset.
    """
    k = sh.shape[-2]
    full = math.isqrt(k) - 1
    if (full + 1) ** 2 != k:
        raise ValueError(f"sh has K={k} coefficients, not (degree+1)^2")
    degree = full if degree is None else degree
    if degree > full:
        raise ValueError(f"SH degree {degree} needs {(degree + 1) ** 2} coefficients, got {k}")
    n = (degree + 1) ** 2
    bases = sh_bases(degree, F.normalize(dirs.to(sh.dtype), dim=-1))  # [N, n]
    return (bases[..., None] * sh[..., :n, :]).sum(dim=-2)


def sh_colors(sh: Tensor, dirs: Tensor, *, degree: int | None = None) -> Tensor:
    """RGB colours as 3DGS renders them: ``max(eval_sh + 0.5, 0)``.

    Args:
        sh: [N, K, 3] coefficients.
        dirs: [N, 3] directions from the camera centre to each Gaussian.
        degree: bands to use (default: all).

    Returns:
        [N, 3] colours (not clamped above; 3DGS does not either).
    """
    return torch.clamp_min(eval_sh(sh, dirs, degree=degree) + 0.5, 0.0)
