"""The paper's back-projection, kept as the baseline that ``gsbp bench`` measures ours against.

The paper (and its reference code) renders with gsplat and gets ``W^T G`` as the gradient
of ``(render(X) * G).sum()`` w.r.t. the per-Gaussian values ``X``: the render is linear in
``X``, so ``d/dX (render(X) * G).sum() = sum_p w_k(p) G(p)``. ``G`` is the feature map
upsampled to the render size ([H, W, C]), and channels go through in chunks of 32, each a
full rasterization (projection included) plus a backward pass.

- :class:`GsplatAutogradWeights`: exactly that, through ``gsplat.rasterization`` on CUDA.
- :func:`torch_autograd_backproject`: the same method on a CPU, where gsplat does not render:
  a plain-torch differentiable tile compositor (16x16 tiles as gsplat bins them, every
  Gaussian of a tile evaluated at every pixel of the tile, gsplat's alpha and stop rules)
  and autograd.

Neither is used to lift features in this package; the engines in this folder are exact and
much faster (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.gsplat_engine import EngineUnavailableError, gsplat_available
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.projection import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_STOP,
    Projected,
    project_gaussians,
)
from gsbp_ros.raster.weights import ViewWeights
from gsbp_ros.scene import GaussianScene


class GsplatAutogradWeights(ViewWeights):
    """One view rendered by ``gsplat.rasterization`` (``packed=False``); CUDA only.

    Every call rasterizes again (projection included): nothing per-view is cached except
    ``alpha`` and ``weight_sum``. Results are float32 (gsplat's kernels are).
    """

    def __init__(
        self,
        scene: GaussianScene,
        camera: Camera,
        *,
        options: RasterOptions = DEFAULT_RASTER_OPTIONS,
        channel_chunk: int = 32,
        tile_size: int = 16,
    ) -> None:
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
        self._options = {**options.as_dict(), "tile_size": tile_size, "packed": False}
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


def upsample(features: Tensor, height: int, width: int) -> Tensor:
    """[H', W', C] -> [H, W, C] bilinear (``align_corners=False``), as the paper does first."""
    if tuple(features.shape[:2]) == (height, width):
        return features
    return F.interpolate(
        features.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0)


def _tile_lists(proj: Projected, tile_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """gsplat's binning: every valid Gaussian in every tile its box touches, depth sorted.

    Returns:
        ``(tile [I], gaussian [I], offsets [T + 1])``: intersections sorted by tile, front to
        back within a tile (ties by index); tile t holds ``offsets[t]:offsets[t + 1]``.
    """
    tiles_x = -(-proj.width // tile_size)
    tiles_y = -(-proj.height // tile_size)
    ids = proj.valid.nonzero().flatten()
    ids = ids[torch.sort(proj.depths[ids], stable=True).indices]
    mean = proj.means2d[ids].double()
    rad = proj.radii[ids].double()
    tx0 = torch.floor((mean[:, 0] - rad[:, 0]) / tile_size).clamp(0, tiles_x).long()
    tx1 = torch.ceil((mean[:, 0] + rad[:, 0]) / tile_size).clamp(0, tiles_x).long()
    ty0 = torch.floor((mean[:, 1] - rad[:, 1]) / tile_size).clamp(0, tiles_y).long()
    ty1 = torch.ceil((mean[:, 1] + rad[:, 1]) / tile_size).clamp(0, tiles_y).long()
    nx, ny = (tx1 - tx0).clamp_min(0), (ty1 - ty0).clamp_min(0)
    count = nx * ny
    owner = torch.repeat_interleave(torch.arange(ids.numel()), count)
    first = torch.cumsum(count, 0) - count
    local = torch.arange(int(count.sum())) - first[owner]
    tile = (ty0[owner] + local // nx[owner]) * tiles_x + tx0[owner] + local % nx[owner]
    tile, perm = torch.sort(tile, stable=True)  # stable: depth order within a tile
    gauss = ids[owner[perm]]
    offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=tiles_x * tiles_y), 0)
    return tile, gauss, offsets


def _composite_tiles(
    proj: Projected,
    gauss: Tensor,
    offsets: Tensor,
    tiles: Tensor,
    tile_size: int,
    colors: Tensor,
) -> Tensor:
    """Differentiable render of some tiles: [len(tiles), tile_size^2, C] (0 outside the image).

    Every Gaussian of a tile is evaluated at every pixel of the tile (padded to the longest
    list of the batch); alpha and the exclusive ``T <= 1e-4`` stop follow gsplat in float32.
    """
    tiles_x = -(-proj.width // tile_size)
    counts = offsets[tiles + 1] - offsets[tiles]
    k = int(counts.max()) if tiles.numel() else 0
    slot = torch.arange(k)
    present = slot[None, :] < counts[:, None]  # [B, K]
    g = gauss[(offsets[tiles][:, None] + slot[None, :]).clamp_max(max(gauss.numel() - 1, 0))]
    g = torch.where(present, g, torch.zeros_like(g))
    local = torch.arange(tile_size * tile_size)
    px = (tiles % tiles_x)[:, None] * tile_size + local[None] % tile_size  # [B, P]
    py = (tiles // tiles_x)[:, None] * tile_size + local[None] // tile_size
    dx = proj.means2d[g, 0][:, None, :] - (px.float() + 0.5)[:, :, None]  # [B, P, K]
    dy = proj.means2d[g, 1][:, None, :] - (py.float() + 0.5)[:, :, None]
    con = proj.conics[g]
    sigma = (
        0.5 * (con[..., 0][:, None] * dx * dx + con[..., 2][:, None] * dy * dy)
        + con[..., 1][:, None] * dx * dy
    )
    alpha = torch.clamp_max(proj.opacities[g][:, None] * torch.exp(-sigma), MAX_ALPHA)
    use = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & present[:, None, :]
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    t_after = torch.cumprod(1.0 - alpha, dim=-1)
    t_before = torch.cat([torch.ones_like(t_after[..., :1]), t_after[..., :-1]], dim=-1)
    # T only decreases, so gsplat's "stop before the Gaussian that brings T to <= 1e-4" keeps
    # exactly the terms whose T after them is still above it.
    w = torch.where(t_after > TRANSMITTANCE_STOP, alpha * t_before, torch.zeros_like(alpha))
    inside = (px < proj.width) & (py < proj.height)
    w = w * inside[..., None]
    return torch.einsum("bpk,bkc->bpc", w, colors[g])


def torch_autograd_backproject(
    scene: GaussianScene,
    camera: Camera,
    features: Tensor,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    channel_chunk: int = 32,
    tile_size: int = 16,
    max_elements: int = 1 << 24,
    max_chunks: int | None = None,
) -> Tensor:
    """The paper's back-projection on a CPU: autograd through a plain-torch tile compositor.

    Mirrors ``gsplat.rasterization(..., channel_chunk=32)`` and a backward pass: project and
    bin once, then for every chunk of channels composite every tile again (forward) and
    backpropagate ``(render * Up(F)).sum()`` to the per-Gaussian values.

    Args:
        scene: the splats (CPU).
        camera: the view.
        features: [H', W', C] map; upsampled to the view first ([H, W, C], as the paper).
        options: raster settings.
        channel_chunk: channels per compositing + backward pass (the paper's 32).
        tile_size: gsplat's tile size.
        max_elements: Gaussian-pixel evaluations per tile batch (memory bound).
        max_chunks: stop after this many chunks (benchmarks measure a slow view's first
            chunk); the remaining columns stay zero.

    Returns:
        [N, C] ``sum_p w_k(p) Up(F)(p)`` as the gradient of ``(render(X) * Up(F)).sum()``.
    """
    height, width = int(camera.height), int(camera.width)
    up = upsample(features.to(torch.float32), height, width)
    c = up.shape[2]
    tiles_x = -(-width // tile_size)
    tiles_y = -(-height // tile_size)
    pad = torch.zeros(tiles_y * tile_size, tiles_x * tile_size, c)
    pad[:height, :width] = up
    # [T, tile_size^2, C]: each tile's pixels of the upsampled map
    per_tile = (
        pad.reshape(tiles_y, tile_size, tiles_x, tile_size, c)
        .permute(0, 2, 1, 3, 4)
        .reshape(tiles_y * tiles_x, tile_size * tile_size, c)
    )
    with torch.no_grad():
        proj = project_gaussians(scene, camera, options=options)
        _, gauss, offsets = _tile_lists(proj, tile_size)
    counts = offsets[1:] - offsets[:-1]
    # Tiles with similar list lengths batch together: less padding.
    tiles = counts.nonzero().flatten()
    tiles = tiles[torch.sort(counts[tiles], stable=True).indices]
    batches = _tile_batches(counts[tiles], tile_size * tile_size, max_elements)
    out = torch.zeros(scene.num_gaussians, c)
    for i, lo in enumerate(range(0, c, channel_chunk)):
        if max_chunks is not None and i >= max_chunks:
            break
        hi = min(c, lo + channel_chunk)
        x = torch.zeros(scene.num_gaussians, hi - lo, requires_grad=True)
        for a, b in batches:
            batch = tiles[a:b]
            render = _composite_tiles(proj, gauss, offsets, batch, tile_size, x)
            (render * per_tile[batch][..., lo:hi]).sum().backward()
        out[:, lo:hi] = x.grad
    return out


def _tile_batches(counts: Tensor, pixels: int, max_elements: int) -> list[tuple[int, int]]:
    """[start, end) runs of tiles (sorted by list length) within the evaluation budget."""
    out, start, n = [], 0, int(counts.numel())
    lengths = counts.tolist()
    while start < n:
        end = start + 1  # a tile alone may exceed the budget
        while end < n and (end + 1 - start) * pixels * lengths[end] <= max_elements:
            end += 1
        out.append((start, end))
        start = end
    return out
