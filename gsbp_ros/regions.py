"""Geometry of a set of Gaussians for a manipulation planner.

:func:`summarize_region` gives a :class:`RegionSummary`: centroid, axis-aligned box, a
PCA-oriented box, the principal axis and an approach direction from the Gaussians' own
surface normals (a flat 3DGS Gaussian's shortest axis is its surface normal).
numpy float64 throughout; every degenerate case (one point, collinear, planar) is finite.
"""

from __future__ import annotations

import numpy as np

from gsbp_ros.errors import QueryError
from gsbp_ros.results import RegionSummary

#: Mean oriented normals shorter than this carry no direction (normals cancel out).
MIN_NORMAL_AGREEMENT = 1e-3


def _points(x: np.ndarray, name: str, *, cols: int = 3) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == cols:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != cols:
        raise QueryError(f"{name} must have shape [M, {cols}], got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise QueryError(f"{name} holds non-finite values (NaN or Inf)")
    return a


def quat_to_rotmat(quats: np.ndarray) -> np.ndarray:
    """[N, 4] quaternions (w x y z, any non-zero length) -> [N, 3, 3] rotation matrices."""
    q = _points(quats, "quats", cols=4)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    if (norm == 0).any():
        raise QueryError("quats holds zero-length quaternions")
    w, x, y, z = (q / norm).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def gaussian_normals(scales: np.ndarray, quats: np.ndarray) -> np.ndarray:
    """[M, 3] unit normals (unoriented): the rotation column of each shortest scale axis.

    ``scales`` may be scales or log-scales: only their order matters.
    """
    s = _points(scales, "scales")
    rot = quat_to_rotmat(quats)
    if rot.shape[0] != s.shape[0]:
        raise QueryError(f"scales has {s.shape[0]} rows but quats has {rot.shape[0]}")
    axis = np.argmin(s, axis=1)
    return rot[np.arange(s.shape[0]), :, axis]


def canonical_sign(v: np.ndarray) -> np.ndarray:
    """``v`` or ``-v``, whichever has its largest-magnitude component positive."""
    return -v if v[np.argmax(np.abs(v))] < 0 else v


def pca_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA-oriented box tight around the points.

    Returns:
        center: [3] box centre. axes: [3, 3] rows unit, right-handed, variance descending;
        the first two canonically signed, the third their cross product.
        extent: [3] full side lengths along the axes (covers every point).
    """
    p = _points(points, "points")
    mean = p.mean(axis=0)
    d = p - mean
    if p.shape[0] < 2:
        axes = np.eye(3)
    else:
        # eigh of a symmetric 3x3 never fails and always returns an orthonormal basis, also
        # for rank-deficient (collinear, planar) sets: the null directions are just arbitrary.
        _, vecs = np.linalg.eigh(d.T @ d / p.shape[0])
        axes = vecs[:, ::-1].T.copy()
        axes[0] = canonical_sign(axes[0])
        axes[1] = canonical_sign(axes[1])
        axes[2] = np.cross(axes[0], axes[1])
    proj = d @ axes.T
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    return mean + ((lo + hi) / 2) @ axes, axes, hi - lo


def approach_direction(
    means: np.ndarray,
    normals: np.ndarray,
    *,
    camera_centers: np.ndarray | None = None,
    scene_center: np.ndarray | None = None,
    view_points: np.ndarray | None = None,
) -> np.ndarray | None:
    """Unit approach direction: minus the mean outward normal of the region.

    Each normal is first oriented outward, i.e. flipped to point toward

    - its Gaussian's ``view_points`` row (where the cameras that saw that Gaussian stood; an
      opaque surface is seen from its outer side), for rows that differ from the mean, else
    - the mean of ``camera_centers`` (the views that saw the region), else
    - away from ``scene_center`` (the region's centroid relative to the whole scene), else
      (or when the region's centroid is the scene centre) away from the region's centroid.

    Returns None when the oriented normals cancel out (mean shorter than
    :data:`MIN_NORMAL_AGREEMENT`) or no orientation reference exists.
    """
    p = _points(means, "means")
    n = _points(normals, "normals")
    if n.shape != p.shape:
        raise QueryError(f"normals {list(n.shape)} must match means {list(p.shape)}")
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 0, n / np.maximum(length, 1e-300), 0.0)
    centroid = p.mean(axis=0)
    if camera_centers is not None and np.size(camera_centers):
        toward = _points(camera_centers, "camera_centers").mean(axis=0) - p  # [M, 3]
    else:
        outward = None
        if scene_center is not None:
            outward = centroid - _points(scene_center, "scene_center")[0]
        if outward is None or np.linalg.norm(outward) <= 1e-9 * (1 + np.abs(centroid).max()):
            toward = p - centroid  # convex-blob assumption: outward from its own centre
        else:
            toward = np.broadcast_to(outward, p.shape)
    if view_points is not None:
        vp = _points(view_points, "view_points")
        if vp.shape != p.shape:
            raise QueryError(f"view_points {list(vp.shape)} must match means {list(p.shape)}")
        own = vp - p
        known = np.linalg.norm(own, axis=1) > 1e-9 * (1 + np.abs(p).max())
        toward = np.where(known[:, None], own, toward)
    dots = (n * toward).sum(axis=1)
    oriented = np.where(dots[:, None] < 0, -n, n)
    mean = oriented.mean(axis=0)
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm < MIN_NORMAL_AGREEMENT or not np.any(dots):
        return None
    return -mean / norm


def summarize_region(
    means: np.ndarray,
    *,
    scales: np.ndarray | None = None,
    quats: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    camera_centers: np.ndarray | None = None,
    scene_center: np.ndarray | None = None,
    view_points: np.ndarray | None = None,
    approach: bool = True,
) -> RegionSummary:
    """Centroid, AABB, PCA box, principal axis and approach direction of M Gaussians.

    Args:
        means: [M, 3] centres (M >= 1).
        scales, quats: [M, 3] scales (or log-scales), [M, 4] w x y z: give the normals.
        normals: [M, 3] normals instead of scales/quats.
        camera_centers: [V, 3] positions of the cameras that saw the region.
        scene_center: [3] centroid of the whole scene (orientation fallback).
        view_points: [M, 3] where the cameras that saw each Gaussian stood (see
            :func:`approach_direction`); the best orientation when known.
        approach: compute the approach direction (needs normals or scales + quats).
    """
    p = _points(means, "means")
    if p.shape[0] == 0:
        raise QueryError("cannot summarise an empty region")
    center, axes, extent = pca_box(p)
    direction = None
    if approach and normals is None and scales is not None and quats is not None:
        normals = gaussian_normals(scales, quats)
    if approach and normals is not None:
        direction = approach_direction(
            p,
            normals,
            camera_centers=camera_centers,
            scene_center=scene_center,
            view_points=view_points,
        )
    return RegionSummary(
        centroid=p.mean(axis=0),
        aabb_min=p.min(axis=0),
        aabb_max=p.max(axis=0),
        obb_center=center,
        obb_axes=axes,
        obb_extent=extent,
        principal_axis=axes[0].copy(),
        approach=direction,
    )
