"""RasterOptions: the rasterizer settings a scene was trained with, carried to every path.

One object instead of the same four keywords in every signature: the CLI flags and the node
parameters build it, the engines and the projection read it, and the feature-field cache key
includes it (a field lifted with other settings is a different field).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from gsbp_ros.errors import GsbpError

RASTERIZE_MODES = ("classic", "antialiased")


class RasterOptionsError(GsbpError, ValueError):
    """A raster option has an invalid value (a one-line reason)."""


@dataclass(frozen=True)
class RasterOptions:
    """gsplat's rasterization settings that change the compositing weights.

    Attributes:
        near_plane: Gaussians with camera-space depth ``z < near_plane`` are culled.
        far_plane: Gaussians with ``z > far_plane`` are culled.
        eps2d: low-pass term added to the diagonal of every projected 2D covariance.
        rasterize_mode: "classic", or "antialiased" for scenes trained with gsplat's
            opacity compensation (``rasterize_mode="antialiased"`` / Mip-Splatting's 2D filter).
    """

    near_plane: float = 0.01
    far_plane: float = 1e10
    eps2d: float = 0.3
    rasterize_mode: str = "classic"

    def __post_init__(self) -> None:
        for name in ("near_plane", "far_plane", "eps2d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RasterOptionsError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise RasterOptionsError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.near_plane < 0:
            raise RasterOptionsError(f"near_plane must be >= 0, got {self.near_plane}")
        if self.far_plane <= self.near_plane:
            raise RasterOptionsError(
                f"far_plane ({self.far_plane}) must be greater than near_plane ({self.near_plane})"
            )
        if self.eps2d < 0:
            raise RasterOptionsError(f"eps2d must be >= 0, got {self.eps2d}")
        if self.rasterize_mode not in RASTERIZE_MODES:
            raise RasterOptionsError(
                f"rasterize_mode must be one of {', '.join(RASTERIZE_MODES)}, "
                f"got {self.rasterize_mode!r}"
            )

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def cache_key(self) -> dict[str, str]:
        """String values for the feature-field cache key (repr keeps every float bit)."""
        return {f"raster.{k}": repr(v) for k, v in self.as_dict().items()}


DEFAULT_RASTER_OPTIONS = RasterOptions()
