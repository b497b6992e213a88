"""GaussianScene: the splat parameters, in the storage convention of 3DGS / gsplat.

Opacities are stored as logits, scales as logs, quaternions as w x y z (not necessarily unit
length), colours as spherical-harmonic coefficients with the DC term first.
File I/O lives in :mod:`gsbp_ros.scene_io`; this module holds the container and its maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

from gsbp_ros.errors import SceneError

SH_C0 = 0.28209479177387814


@dataclass
class GaussianScene:
    """A 3D Gaussian splat scene.

    Attributes:
        means: [N, 3] centres in the scene's world frame.
        quats: [N, 4] rotations, w x y z, unnormalised allowed.
        log_scales: [N, 3] log of the per-axis standard deviations.
        logit_opacities: [N] logit of the opacity.
        sh: [N, K, 3] spherical-harmonic coefficients, K = (degree + 1)^2, DC first.
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    logit_opacities: Tensor
    sh: Tensor

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> GaussianScene:
        """Load an Inria-format ``.ply`` or a gsplat checkpoint (``.pt``/``.pth``/``.ckpt``)."""
        from gsbp_ros import scene_io

        return scene_io.load_scene(path)

    def save(self, path: str | Path) -> None:
        """Save as Inria ``.ply`` or gsplat checkpoint, chosen by suffix; written atomically."""
        from gsbp_ros import scene_io

        scene_io.save_scene(self, path)

    def validate(self) -> None:
        """Raise :class:`SceneError` on inconsistent shapes, zero Gaussians or non-finite values."""
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "logit_opacities": (n,),
        }
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise SceneError(f"means must have shape [N, 3], got {list(self.means.shape)}")
        if n == 0:
            raise SceneError("scene has zero Gaussians")
        for name, shape in expected.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise SceneError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise SceneError(f"sh must have shape [N, K, 3], got {list(self.sh.shape)}")
        k = self.sh.shape[1]
        degree = round(math.sqrt(k)) - 1
        if (degree + 1) ** 2 != k or degree > 4:
            raise SceneError(f"sh has K={k} coefficients, not (degree+1)^2 for degree 0..4")
        for f in fields(self):
            t = getattr(self, f.name)
            if not torch.is_floating_point(t):
                raise SceneError(f"{f.name} must be floating point, got {t.dtype}")
            bad = ~torch.isfinite(t)
            if bad.any():
                rows = bad.reshape(n, -1).any(dim=1).nonzero().flatten()
                raise SceneError(
                    f"{f.name} has non-finite values (NaN/Inf) in {rows.numel()} Gaussians, "
                    f"first at index {int(rows[0])}"
                )
        if (self.quats.norm(dim=-1) == 0).any():
            raise SceneError("quats has zero-length quaternions")

    # -- derived quantities -----------------------------------------------------------------
    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return round(math.sqrt(self.sh.shape[1])) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    def opacities(self) -> Tensor:
        """[N] opacity in (0, 1)."""
        return torch.sigmoid(self.logit_opacities)

    def scales(self) -> Tensor:
        """[N, 3] per-axis standard deviations."""
        return torch.exp(self.log_scales)

    def unit_quats(self) -> Tensor:
        """[N, 4] normalised w x y z quaternions."""
        return self.quats / self.quats.norm(dim=-1, keepdim=True)

    def to(self, device: str | torch.device) -> GaussianScene:
        return GaussianScene(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def subset(self, index: Tensor) -> GaussianScene:
        """The Gaussians selected by an index or boolean mask, in their original order."""
        return GaussianScene(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def bounds(self, quantile: float = 0.0) -> tuple[Tensor, Tensor]:
        """[3], [3] lower and upper corners of the means (robust to outliers with quantile > 0)."""
        if quantile <= 0.0:
            return self.means.min(dim=0).values, self.means.max(dim=0).values
        q = torch.tensor([quantile, 1.0 - quantile], dtype=self.means.dtype)
        lo_hi = torch.quantile(self.means.cpu().float(), q.float(), dim=0).to(self.means)
        return lo_hi[0], lo_hi[1]
