"""2D views of query results: masks from rendered features (paper Eq. 7) and colour overlays.

:data:`PALETTE` is the one colour table for labels, shared with the ROS markers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.errors import QueryError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.query import similarity_segment

#: Distinct RGB colours (0..1) for labels 0, 1, 2, ... (tab10 without its grey, then six
#: saturated extras); label i uses PALETTE[i % len(PALETTE)].
PALETTE: list[tuple[float, float, float]] = [
    (0.122, 0.467, 0.706),  # blue
    (1.000, 0.498, 0.055),  # orange
    (0.173, 0.627, 0.173),  # green
    (0.839, 0.153, 0.157),  # red
    (0.580, 0.404, 0.741),  # purple
    (0.549, 0.337, 0.294),  # brown
    (0.890, 0.467, 0.761),  # pink
    (0.737, 0.741, 0.133),  # olive
    (0.090, 0.745, 0.812),  # cyan
    (1.000, 0.843, 0.000),  # gold
    (0.000, 0.000, 0.545),  # navy
    (0.000, 0.392, 0.000),  # dark green
    (0.502, 0.000, 0.000),  # maroon
    (0.678, 1.000, 0.184),  # lime
    (1.000, 0.000, 1.000),  # magenta
    (0.980, 0.502, 0.447),  # salmon
]

#: Colour of background / unlabelled (label -1).
BACKGROUND_COLOR: tuple[float, float, float] = (0.5, 0.5, 0.5)


def color_for(index: int) -> tuple[float, float, float]:
    """RGB (0..1) of label ``index``; negative indices (background) are grey."""
    return BACKGROUND_COLOR if index < 0 else PALETTE[index % len(PALETTE)]


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _rgb01(rgb: Tensor | np.ndarray) -> np.ndarray:
    """[H, W, 3] float64 in 0..1 from uint8 or float input."""
    a = _array(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise QueryError(f"rgb must have shape [H, W, 3], got {list(a.shape)}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise QueryError("rgb holds non-finite values")
    return np.clip(a, 0.0, 1.0)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def _blend(rgb: np.ndarray, where: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    out = rgb.copy()
    out[where] = (1.0 - alpha) * rgb[where] + alpha * colors
    return _to_uint8(out)


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise QueryError(f"overlay alpha must lie in [0, 1], got {alpha}")
    return float(alpha)


def overlay_mask(
    rgb: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    *,
    color: Sequence[float] = (1.0, 0.0, 0.0),
    alpha: float = 0.5,
) -> np.ndarray:
    """Tint the masked pixels: out = (1 - alpha) rgb + alpha color there, rgb elsewhere.

    Args:
        rgb: [H, W, 3] uint8 or float in 0..1. mask: [H, W] bool.
        color: RGB in 0..1. alpha: tint strength in [0, 1].

    Returns:
        [H, W, 3] uint8.
    """
    img = _rgb01(rgb)
    m = _array(mask).astype(bool)
    if m.shape != img.shape[:2]:
        raise QueryError(f"mask is {list(m.shape)} but the image is {list(img.shape[:2])}")
    col = np.asarray(color, dtype=np.float64).reshape(3)
    return _blend(img, m, col, _check_alpha(alpha))


def overlay_labels(
    rgb: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    palette: Sequence[Sequence[float]] = PALETTE,
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """Tint each pixel with its label's colour (``palette[label % len]``); -1 is untouched.

    Args:
        rgb: [H, W, 3] uint8 or float in 0..1. labels: [H, W] int, -1 = background.

    Returns:
        [H, W, 3] uint8.
    """
    img = _rgb01(rgb)
    lab = _array(labels)
    if lab.shape != img.shape[:2] or not np.issubdtype(lab.dtype, np.integer):
        raise QueryError(f"labels must be an integer [H, W] = {list(img.shape[:2])} array")
    pal = np.asarray(palette, dtype=np.float64).reshape(-1, 3)
    fg = lab >= 0
    return _blend(img, fg, pal[lab[fg] % len(pal)], _check_alpha(alpha))


def save_png(array: Tensor | np.ndarray, path: str | os.PathLike) -> None:
    """Write [H, W] or [H, W, 3|4] (uint8, bool, or float in 0..1) as a PNG, atomically."""
    from PIL import Image

    a = _array(array)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise QueryError(f"an image must be [H, W] or [H, W, 3|4], got {list(a.shape)}")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = _to_uint8(np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0))
    with atomic_write(path, "wb") as f:
        Image.fromarray(np.ascontiguousarray(a)).save(f, format="PNG")


def mask_2d(
    rendered_features: Tensor,
    positive: Tensor,
    negative: Tensor | None = None,
    threshold: float = 0.0,
    alpha: Tensor | None = None,
    *,
    min_alpha: float = 0.5,
) -> Tensor:
    """2D segmentation mask from rendered features (paper Eq. 7), same rule as 3D.

    Each pixel's rendered feature is treated as a Gaussian's feature in
    :func:`gsbp_ros.query.similarity_segment`; pixels whose accumulated opacity is below
    ``min_alpha`` (background) are never selected.

    Args:
        rendered_features: [H, W, C] rendered feature image.
        positive: [P, C]. negative: [Q, C] or None. threshold: as in similarity_segment.
        alpha: [H, W] accumulated opacity (Σ_k w_k(p)), or None to keep every pixel.

    Returns:
        [H, W] bool on the features' device.
    """
    f = (
        rendered_features
        if isinstance(rendered_features, Tensor)
        else torch.as_tensor(np.asarray(rendered_features))
    )
    if f.ndim != 3:
        raise QueryError(f"rendered_features must be [H, W, C], got {list(f.shape)}")
    h, w, c = f.shape
    seen = None
    if alpha is not None:
        a = alpha if isinstance(alpha, Tensor) else torch.as_tensor(np.asarray(alpha))
        if tuple(a.shape) != (h, w):
            raise QueryError(f"alpha is {list(a.shape)} but the features are {[h, w]}")
        seen = a.reshape(-1).to(f.device) >= min_alpha
    mask, _ = similarity_segment(
        f.reshape(h * w, c), positive, negative, threshold=threshold, seen=seen
    )
    return mask.reshape(h, w)


# -- grippers on a render ----------------------------------------------------------------------
#: Colours of drawn grippers: the best grasp, then the others (RGB in 0..1).
BEST_GRASP_COLOR: tuple[float, float, float] = (0.10, 0.80, 0.10)
OTHER_GRASP_COLOR: tuple[float, float, float] = (0.10, 0.55, 0.95)


def project_points(camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([P, 2] pixel coordinates (x right, y down; pixel (u, v) spans [u, u+1)), [P] depth
    along the optical axis) of world points seen by ``camera``."""
    w2c = camera.world_to_cam.double().cpu().numpy()
    k = camera.K.double().cpu().numpy()
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3) @ w2c[:3, :3].T + w2c[:3, 3]
    z = p[:, 2]
    safe = np.where(np.abs(z) > 1e-12, z, 1e-12)
    uv = np.stack([k[0, 0] * p[:, 0] / safe + k[0, 2], k[1, 1] * p[:, 1] / safe + k[1, 2]], 1)
    return uv, z


def draw_grippers(
    rgb: Tensor | np.ndarray,
    camera,
    corners: Sequence[np.ndarray],
    *,
    colors: Sequence[Sequence[float]] | None = None,
    line_width: int = 2,
    fill_alpha: float = 0.3,
) -> np.ndarray:
    """Draw grippers (their boxes' corners, e.g. :func:`gsbp_ros.gripper.gripper_corners`) on
    a render: faces filled translucent, edges solid; the first gripper is drawn last (on top).

    Args:
        rgb: [H, W, 3] render of ``camera``'s view (uint8 or float in 0..1).
        corners: one [B, 8, 3] array of world box corners per gripper (corner order of
            :func:`gsbp_ros.gripper.box_corners`).
        colors: RGB in 0..1 per gripper; default :data:`BEST_GRASP_COLOR` for the first,
            :data:`OTHER_GRASP_COLOR` for the others.
        line_width: pixels. fill_alpha: opacity of the faces in [0, 1].

    Returns:
        [H, W, 3] uint8. Faces and edges with a corner behind the camera are left out.
    """
    from PIL import Image, ImageDraw

    from gsbp_ros.gripper import BOX_EDGES, BOX_FACES

    img = _rgb01(rgb)
    if img.shape[:2] != (camera.height, camera.width):
        raise QueryError(
            f"the image is {img.shape[1]}x{img.shape[0]} but the camera is "
            f"{camera.width}x{camera.height}"
        )
    if colors is None:
        colors = [BEST_GRASP_COLOR] + [OTHER_GRASP_COLOR] * (len(corners) - 1)
    if len(colors) != len(corners):
        raise QueryError(f"{len(corners)} grippers but {len(colors)} colours")
    alpha = round(255 * _check_alpha(fill_alpha))
    canvas = Image.fromarray(_to_uint8(img)).convert("RGBA")
    for boxes, col in reversed(list(zip(corners, colors))):
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        pen = ImageDraw.Draw(layer)
        rgb255 = tuple(round(255 * float(c)) for c in col)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 8, 3)
        for box in boxes:
            uv, z = project_points(camera, box)
            for face in BOX_FACES:
                if (z[list(face)] > 1e-6).all():
                    pen.polygon([tuple(uv[i]) for i in face], fill=(*rgb255, alpha))
        canvas = Image.alpha_composite(canvas, layer)
        pen = ImageDraw.Draw(canvas)
        for box in boxes:
            uv, z = project_points(camera, box)
            for i, j in BOX_EDGES:
                if z[i] > 1e-6 and z[j] > 1e-6:
                    pen.line([tuple(uv[i]), tuple(uv[j])], fill=(*rgb255, 255), width=line_width)
    return np.asarray(canvas.convert("RGB"))


def selection_pixels(weights, indices: np.ndarray) -> np.ndarray:
    """[H, W] bool: opaque pixels (alpha > 0.5) where the selected Gaussians carry most of the
    compositing weight, from a view's weights (:func:`gsbp_ros.raster.compute_view_weights`)."""
    chosen = torch.zeros(weights.num_gaussians, 1)
    chosen[torch.from_numpy(np.asarray(indices, dtype=np.int64))] = 1.0
    alpha = weights.alpha()
    return ((weights.render(chosen)[..., 0] > 0.5 * alpha) & (alpha > 0.5)).cpu().numpy()
