"""``.splat`` files: the compact format of antimatter15's WebGL viewer (and many web viewers).

Each Gaussian is one 32-byte little-endian record, no header::

    float32 x, y, z          position
    float32 sx, sy, sz       standard deviations (linear, not log)
    uint8   r, g, b, a       colour and opacity, 0..255
    uint8   qw, qx, qy, qz   unit quaternion stored as q * 128 + 128 (clamped to 0..255)

The converter in that repository (``convert.py`` / ``main.js``) writes the quaternion in the
Inria order ``rot_0..rot_3`` = w x y z, colour = ``(0.5 + SH_C0 * f_dc) * 255`` and alpha =
``sigmoid(opacity) * 255``; the viewer decodes ``(byte - 128) / 128`` and ``byte / 255``.
We decode the same way: colours become degree-0 SH (``f_dc = (c/255 - 0.5) / SH_C0``, so the
rendered colour is exactly ``c/255``), alpha becomes a logit (clamped to [1e-6, 1 - 1e-6]
first, so fully opaque records stay finite), scales become logs. The format is lossy: higher
SH bands are gone and opacity/colour/rotation are 8-bit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gsbp_ros.errors import SceneError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.scene import SH_C0, GaussianScene

log = logging.getLogger(__name__)

#: One Gaussian: 12 + 12 + 4 + 4 = 32 bytes.
RECORD = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]
)
_OPACITY_EPS = 1e-6
_TINY_SCALE = float(np.finfo(np.float32).tiny)


def read_splat(path: str | Path) -> dict[str, torch.Tensor]:
    """The fields of a :class:`GaussianScene` from a ``.splat`` file (float32, CPU)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SceneError(f"{path}: cannot read .splat file: {exc.strerror or exc}") from None
    if size == 0:
        raise SceneError(f"{path}: empty .splat file (zero Gaussians)")
    if size % RECORD.itemsize:
        raise SceneError(
            f"{path}: .splat size {size} bytes is not a multiple of 32 (one record per "
            f"Gaussian); the file is truncated or not a .splat file"
        )
    try:
        data = np.fromfile(path, dtype=RECORD)
    except (OSError, ValueError) as exc:
        raise SceneError(f"{path}: cannot read .splat file: {exc}") from None
    n = len(data)
    pos = data["position"].astype(np.float32)
    scale = data["scale"].astype(np.float64)
    bad = ~np.isfinite(pos).all(axis=1) | ~np.isfinite(scale).all(axis=1) | (scale < 0).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SceneError(
            f"{path}: {int(bad.sum())} of {n} records have non-finite positions or negative/"
            f"non-finite scales (first: record {first})"
        )
    # exp(log scale) underflows to 0 in float32 for the tiniest Gaussians of real scenes.
    scale = np.maximum(scale, _TINY_SCALE)
    rgba = data["rgba"].astype(np.float64) / 255.0
    quats = (data["rot"].astype(np.float64) - 128.0) / 128.0
    zero = np.linalg.norm(quats, axis=1) == 0
    if zero.any():
        log.warning("%s: %d records have a zero quaternion; using the identity", path, zero.sum())
        quats[zero] = [1.0, 0.0, 0.0, 0.0]
    alpha = np.clip(rgba[:, 3], _OPACITY_EPS, 1.0 - _OPACITY_EPS)
    return {
        "means": torch.from_numpy(np.ascontiguousarray(pos)),
        "quats": torch.from_numpy(quats.astype(np.float32)),
        "log_scales": torch.from_numpy(np.log(scale).astype(np.float32)),
        "logit_opacities": torch.from_numpy(np.log(alpha / (1.0 - alpha)).astype(np.float32)),
        "sh": torch.from_numpy(((rgba[:, None, :3] - 0.5) / SH_C0).astype(np.float32)),
    }


def encode_splat(scene: GaussianScene) -> np.ndarray:
    """[N] records of :data:`RECORD` the way the reference converter writes them (rounded
    to nearest, clamped; no sorting). Higher SH bands are dropped."""
    n = scene.num_gaussians
    out = np.zeros(n, dtype=RECORD)
    out["position"] = scene.means.detach().cpu().numpy()
    out["scale"] = np.exp(scene.log_scales.detach().cpu().double().numpy())
    color = SH_C0 * scene.sh[:, 0, :].detach().cpu().double().numpy() + 0.5
    alpha = torch.sigmoid(scene.logit_opacities.detach().cpu().double()).numpy()
    rgba = np.concatenate([color, alpha[:, None]], axis=1)
    out["rgba"] = np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
    q = scene.unit_quats().detach().cpu().double().numpy()
    out["rot"] = np.clip(np.rint(q * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return out


def write_splat(scene: GaussianScene, path: str | Path) -> None:
    """Save ``scene`` as a ``.splat`` file (atomically). Lossy: see the module docstring."""
    with atomic_write(path, "wb") as f:
        f.write(encode_splat(scene).tobytes())
