"""gsplat CUDA engine: the weights stay implicit inside gsplat's rasterizer.

This is the paper's reference trick: the rendered image is linear in the per-Gaussian
colours, ``render(X)(p) = sum_k w_k(p) X_k``, so

    d/dX (render(X) * G).sum() = sum_p w_k(p) G(p) = W^T G

back-projects a feature map ``G`` (already resized to H x W) with one forward and one
backward pass. Channels go through in chunks (``channel_chunk``, default 32: one of gsplat's
compiled channel counts, so nothing gets padded) to bound the [H, W, chunk] tensors.

Agreement with the torch engine: gsplat 1.5.3 projects with an opacity-aware radius
``ceil(min(3.33, sqrt(2 ln(255 o))) sqrt(S_xx))`` and evaluates every pixel of every 16x16
tile that box touches. Every pixel with alpha >= 1/255 lies inside that box (the torch
engine uses the same ellipse), so both list the same pixels; older gsplat versions used a
3-sigma radius and could miss pixels of opaque Gaussians beyond 3 sigma. What remains is
float rounding: the kernels are built with ``-use_fast_math`` (``__expf``), keep T in
float32 and recover T in the backward pass by division. Expect weights, renders and
back-projections equal to ~1e-5 absolute for unit-scale values, except for the rare pixel
where alpha sits within an ulp of 1/255 or T within an ulp of 1e-4, where one engine keeps
a term the other drops (a difference up to ~alpha * T of that term).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import GsbpError
from gsbp_ros.raster.projection import RASTERIZE_MODES
from gsbp_ros.raster.torch_engine import ViewWeights
from gsbp_ros.scene import GaussianScene


class EngineUnavailableError(GsbpError):
    """The requested raster engine cannot run here (no CUDA device, gsplat missing)."""


@functools.cache
def gsplat_available() -> bool:
    """True when a CUDA device is present and gsplat's CUDA kernels load.

    The first call may JIT-compile gsplat's extension (minutes) when no prebuilt one exists.
    Cached: it is asked once per view, and a failed compile raises out of the import, which
    Python does not cache, so every call would start the compile again.
    """
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda._backend import _C
    except Exception:
        return False
    return _C is not None


class GsplatViewWeights(ViewWeights):
    """One view rendered by ``gsplat.rasterization`` (``packed=False``); CUDA only.

    Every call rasterizes again (projection included): nothing per-view is cached except
    ``alpha`` and ``weight_sum``. Results are float32 (gsplat's kernels are).
    """

    def __init__(
        self,
        scene: GaussianScene,
        camera: Camera,
        *,
        near_plane: float = 0.01,
        far_plane: float = 1e10,
        eps2d: float = 0.3,
        rasterize_mode: str = "classic",
        channel_chunk: int = 32,
        tile_size: int = 16,
    ) -> None:
        if rasterize_mode not in RASTERIZE_MODES:
            raise ValueError(
                f"rasterize_mode must be one of {RASTERIZE_MODES}, got {rasterize_mode!r}"
            )
        if channel_chunk < 1:
            raise ValueError(f"channel_chunk must be >= 1, got {channel_chunk}")
        if scene.device.type != "cuda":
            raise EngineUnavailableError(
                f"the gsplat engine needs the scene on a CUDA device, it is on {scene.device}; "
                "move it with scene.to('cuda') or use engine='torch'"
            )
        if not gsplat_available():
            raise EngineUnavailableError(
                "the gsplat engine needs gsplat with working CUDA kernels; use engine='torch'"
            )
        from gsplat import rasterization

        self._rasterization = rasterization
        device = scene.device
        # gsplat's kernels are float32; the scene's autograd graph is not ours to extend.
        self._means = scene.means.detach().float().contiguous()
        self._quats = scene.quats.detach().float().contiguous()
        self._scales = torch.exp(scene.log_scales.detach().float()).contiguous()
        self._opacities = torch.sigmoid(scene.logit_opacities.detach().float()).contiguous()
        self._viewmat = camera.world_to_cam.to(device=device, dtype=torch.float32)[None]
        self._K = camera.K.to(device=device, dtype=torch.float32)[None]
        self._options = {
            "near_plane": near_plane,
            "far_plane": far_plane,
            "eps2d": eps2d,
            "rasterize_mode": rasterize_mode,
            "tile_size": tile_size,
            "packed": False,
        }
        self.channel_chunk = int(channel_chunk)
        self.width = int(camera.width)
        self.height = int(camera.height)
        self.num_gaussians = scene.num_gaussians
        self.device = device
        self._alpha: Tensor | None = None
        self._weight_sum: Tensor | None = None

    def rasterize(self, colors: Tensor) -> tuple[Tensor, Tensor]:
        """gsplat's render of per-Gaussian values, no background.

        Args:
            colors: [N, C] float32 on the scene's device (may require grad).

        Returns:
            ``(render [H, W, C], alpha [H, W, 1])``; gsplat's alpha is ``1 - T_final``.
        """
        render, alpha, _ = self._rasterization(
            self._means,
            self._quats,
            self._scales,
            self._opacities,
            colors,
            self._viewmat,
            self._K,
            self.width,
            self.height,
            channel_chunk=self.channel_chunk,
            **self._options,
        )
        return render[0], alpha[0]

    def render(self, values: Tensor) -> Tensor:
        self._check_values(values)
        values = values.to(device=self.device, dtype=torch.float32).contiguous()
        with torch.no_grad():
            # rasterization() itself walks the channels in chunks of channel_chunk.
            return self.rasterize(values)[0]

    def backproject(self, features: Tensor) -> Tensor:
        self._check_features(features)
        c = features.shape[-1]
        features = features.to(device=self.device, dtype=torch.float32)
        same_size = tuple(features.shape[:2]) == (self.height, self.width)
        out = torch.empty(self.num_gaussians, c, device=self.device, dtype=torch.float32)
        for lo in range(0, c, self.channel_chunk):
            chunk = features[..., lo : lo + self.channel_chunk]
            if not same_size:
                chunk = F.interpolate(
                    chunk.permute(2, 0, 1)[None],
                    size=(self.height, self.width),
                    mode="bilinear",
                    align_corners=False,
                )[0].permute(1, 2, 0)
            # The gradient does not depend on X (the render is linear in it): zeros will do.
            x = torch.zeros(
                self.num_gaussians,
                chunk.shape[-1],
                device=self.device,
                dtype=torch.float32,
                requires_grad=True,
            )
            with torch.enable_grad():
                render = self.rasterize(x)[0]
                (grad,) = torch.autograd.grad((render * chunk).sum(), x)
            out[:, lo : lo + chunk.shape[-1]] = grad
        return out

    def weight_sum(self) -> Tensor:
        if self._weight_sum is None:
            ones = torch.ones(self.height, self.width, 1, device=self.device, dtype=torch.float32)
            self._weight_sum = self.backproject(ones)[:, 0]
        return self._weight_sum

    def alpha(self) -> Tensor:
        """[H, W] gsplat's ``1 - T_final``: equals ``sum_k w_k(p)`` up to float rounding."""
        if self._alpha is None:
            with torch.no_grad():
                zeros = torch.zeros(self.num_gaussians, 1, device=self.device, dtype=torch.float32)
                self._alpha = self.rasterize(zeros)[1][..., 0]
        return self._alpha
