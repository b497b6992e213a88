"""EWA projection of 3D Gaussians into one pinhole view, with gsplat 1.5.3's exact rules.

This mirrors ``gsplat/cuda/csrc/ProjectionEWA3DGSFused.cu`` (the kernel ``rasterization``
runs) and ``gsplat.cuda._torch_impl._fully_fused_projection`` (its PyTorch twin):

- the Jacobian uses the mean clamped to ``x/z in [-(cx/fx + 0.3 tan_fovx),
  (W - cx)/fx + 0.3 tan_fovx]`` (and likewise for y), ``tan_fovx = 0.5 W / fx``; with a
  centred principal point this is the familiar ``1.3 tan(fov)`` clamp of 3DGS. The projected
  mean itself is not clamped;
- ``eps2d`` is added to the diagonal of the 2D covariance (the low-pass filter); with
  ``rasterize_mode="antialiased"`` the opacity is multiplied by
  ``sqrt(max(0, det_before / det_after))``;
- culled: depth ``z < near_plane`` or ``z > far_plane`` (the CUDA kernel's comparisons; the
  PyTorch twin uses ``<=``/``>=``, which only differs on the boundary), ``det <= 0`` after the
  blur, effective opacity ``< 1/255`` (nothing of it can pass the alpha threshold), and
  Gaussians whose bounding box misses the image;
- the bounding box is opacity aware, as in the CUDA kernel: half-widths
  ``ceil(extend * sqrt(cov2d_xx))`` with ``extend = min(3.33, sqrt(2 ln(255 o)))``. A pixel
  whose alpha can reach 1/255 has ``sigma <= ln(255 o)``, i.e. Mahalanobis distance
  ``<= sqrt(2 ln(255 o))``, so the box holds every pixel that can contribute (for ``o <= 1``
  the 3.33 cap never binds).

Everything is computed in float32, as gsplat's kernels do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.scene import GaussianScene

ALPHA_THRESHOLD = 1.0 / 255.0
"""Alphas below this are skipped by the rasterizer (gsplat ``ALPHA_THRESHOLD``)."""
MAX_ALPHA = 0.999
"""Alphas are clamped to this, so that a single Gaussian never makes T exactly zero."""
TRANSMITTANCE_STOP = 1e-4
"""A pixel stops before the Gaussian that would bring its transmittance to ``<=`` this."""


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities of one view (all float32 unless noted).

    Attributes:
        means2d: [N, 2] projected centres in pixels (pixel (u, v) has its centre at
            (u + 0.5, v + 0.5)).
        conics: [N, 3] (a, b, c) of the inverse blurred 2D covariance
            [[a, b], [b, c]].
        covars2d: [N, 3] (xx, xy, yy) of the blurred 2D covariance (eps2d added).
        depths: [N] camera-space z.
        opacities: [N] effective opacities (times the compensation when antialiased).
        radii: [N, 2] int32 bounding-box half-widths in pixels; 0 where culled.
        valid: [N] bool, the Gaussian may touch at least one pixel.
        width: image width.
        height: image height.
    """

    means2d: Tensor
    conics: Tensor
    covars2d: Tensor
    depths: Tensor
    opacities: Tensor
    radii: Tensor
    valid: Tensor
    width: int
    height: int

    @property
    def num_gaussians(self) -> int:
        return int(self.means2d.shape[0])

    def extents(self) -> Tensor:
        """[N] Mahalanobis radius ``sqrt(2 ln(255 o))`` inside which alpha can reach 1/255.

        Zero where the opacity is below the threshold.
        """
        return alpha_extent(self.opacities)


def alpha_extent(opacities: Tensor) -> Tensor:
    """[N] ``sqrt(2 ln(255 o))`` for opacities [N], 0 where ``o < 1/255``: beyond this
    Mahalanobis distance ``o exp(-d^2 / 2)`` stays below the alpha threshold."""
    log_ratio = torch.log(opacities.clamp_min(1e-30) / ALPHA_THRESHOLD)
    return torch.sqrt(2.0 * log_ratio.clamp_min(0.0))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances ``R S S^T R^T``.

    Args:
        quats: [N, 4] w x y z, need not be unit length.
        scales: [N, 3] standard deviations.

    Returns:
        [N, 3, 3] covariances.
    """
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape((*q.shape[:-1], 3, 3))
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    scene: GaussianScene,
    camera: Camera,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
) -> Projected:
    """Project every Gaussian of ``scene`` into ``camera`` (EWA splatting, gsplat rules).

    Args:
        scene: the splats; their device is used (the camera is moved there).
        camera: pinhole view, OpenCV axes.
        options: near/far planes (Gaussians with camera-space ``z < near_plane`` or
            ``z > far_plane`` are culled), ``eps2d`` (added to the diagonal of each 2D
            covariance) and ``rasterize_mode`` ("antialiased": opacity compensation).

    Returns:
        :class:`Projected` with N entries (culled ones flagged in ``valid``).
    """
    near_plane, far_plane, eps2d = options.near_plane, options.far_plane, options.eps2d
    rasterize_mode = options.rasterize_mode
    device = scene.device
    dtype = torch.float32
    width, height = int(camera.width), int(camera.height)
    viewmat = camera.world_to_cam.to(device=device, dtype=dtype)
    K = camera.K.to(device=device, dtype=dtype)

    means = scene.means.detach().to(dtype)
    covars = quat_scale_to_covar(
        scene.quats.detach().to(dtype), torch.exp(scene.log_scales.detach().to(dtype))
    )
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R.T + t  # [N, 3]
    covars_c = R @ covars @ R.T  # [N, 3, 3]

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled Gaussians may sit at z = 0; give them a harmless depth so that no NaN/Inf
    # appears in the arrays (their results are masked by ``valid`` anyway).
    zs = torch.where(in_depth, z, torch.ones_like(z))

    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / zs
    # Clamping the Jacobian's x/z, y/z keeps far off-screen Gaussians from blowing up.
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(zs)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [N, 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    det_orig = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    cxx = cov2d[:, 0, 0] + eps2d
    cyy = cov2d[:, 1, 1] + eps2d
    cxy = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    det = cxx * cyy - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    ok_det = det > 0
    safe_det = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([cyy / safe_det, -cxy / safe_det, cxx / safe_det], dim=-1)

    opacities = torch.sigmoid(scene.logit_opacities.detach().to(dtype))
    if rasterize_mode == "antialiased":
        opacities = opacities * torch.sqrt((det_orig / safe_det).clamp_min(0.0))

    extend = alpha_extent(opacities).clamp_max(3.33)
    radius_x = torch.ceil(extend * torch.sqrt(cxx.clamp_min(0.0)))
    radius_y = torch.ceil(extend * torch.sqrt(cyy.clamp_min(0.0)))
    inside = (
        (means2d[:, 0] + radius_x > 0)
        & (means2d[:, 0] - radius_x < width)
        & (means2d[:, 1] + radius_y > 0)
        & (means2d[:, 1] - radius_y < height)
    )
    valid = (
        in_depth
        & ok_det
        & (opacities >= ALPHA_THRESHOLD)
        & ((radius_x > 0) | (radius_y > 0))
        & inside
        & torch.isfinite(means2d).all(dim=-1)
    )
    radii = torch.stack([radius_x, radius_y], dim=-1)
    radii = torch.where(valid[:, None], radii, torch.zeros_like(radii)).to(torch.int32)
    return Projected(
        means2d=means2d,
        conics=conics,
        covars2d=torch.stack([cxx, cxy, cyy], dim=-1),
        depths=z,
        opacities=opacities,
        radii=radii,
        valid=valid,
        width=width,
        height=height,
    )


def depth_order(projected: Projected) -> Tensor:
    """[M] indices of the valid Gaussians, front to back.

    Ties in depth are broken by Gaussian index: gsplat's tile sort is a stable radix sort
    over intersections emitted in Gaussian-index order, so equal depths keep index order.
    """
    ids = projected.valid.nonzero().flatten()
    order = torch.sort(projected.depths[ids], stable=True).indices
    return ids[order]
