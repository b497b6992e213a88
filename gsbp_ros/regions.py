"""Geometry of a set of Gaussians for a manipulation planner, robust to floaters.

:func:`summarize_region` gives a :class:`RegionSummary`: centroid, axis-aligned box, a
PCA-oriented box, the principal axis and an approach direction from the Gaussians' own
surface normals (a flat 3DGS Gaussian's shortest axis is its surface normal).

One floater must not spoil a region: every Gaussian carries a weight (its opacity times its
back-projection weight, saturated at the region's median: :func:`region_weights`), Gaussians
far outside the weighted bulk are trimmed (:func:`trim_outliers`), and the centroid and
principal axes are weighted. Normals are oriented outward by where the cameras that saw each
Gaussian stood, then by consensus with confidently oriented neighbours, and only then by
fallbacks that point away from the region's own centre (:func:`orient_normals`).
numpy float64 throughout; every degenerate case (one point, collinear, planar) is finite.
"""

from __future__ import annotations

import numpy as np

from gsbp_ros.errors import QueryError
from gsbp_ros.results import RegionSummary

#: Mean oriented normals shorter than this carry no direction (normals cancel out).
MIN_NORMAL_AGREEMENT = 1e-3
#: A reference direction orients a normal only when |cos(normal, reference)| reaches this:
#: a camera mean that lies near a Gaussian's tangent plane (seen from both sides) is no
#: evidence for either sign.
MIN_ORIENT_COS = 0.2
#: Neighbours consulted by the consensus step of :func:`orient_normals`, and how parallel
#: (|cos|) a neighbour's normal must be to vote.
ORIENT_NEIGHBOURS = 8
NEIGHBOUR_MIN_COS = 0.5

#: How each normal was oriented (:func:`orient_normals`).
ORIENTED_BY = ("view_points", "neighbours", "region_centre", "cameras", "scene_centre")
UNORIENTED = -1


def _points(x: np.ndarray, name: str, *, cols: int = 3) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == cols:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != cols:
        raise QueryError(f"{name} must have shape [M, {cols}], got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise QueryError(f"{name} holds non-finite values (NaN or Inf)")
    return a


def _vector(x: np.ndarray | None, name: str, m: int) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.shape[0] != m:
        raise QueryError(f"{name} must have {m} entries, got {a.shape[0]}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise QueryError(f"{name} must be finite and non-negative")
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


def rotmat_to_quat(rotations: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices -> [N, 4] unit quaternions w x y z with w >= 0.

    Each row uses the best conditioned of the four classic formulas (largest pivot).
    """
    m = np.asarray(rotations, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1:] != (3, 3) or not np.isfinite(m).all():
        raise QueryError(f"rotations must be finite [N, 3, 3], got {list(m.shape)}")
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    pivots = np.stack(
        [1 + tr, 1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr, 1 + 2 * m[:, 2, 2] - tr], 1
    )
    # 4 q_k q for k = w, x, y, z (each row of the 4x4 outer product 4 q q^T).
    outer = np.stack(
        [
            np.stack(
                [1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]],
                1,
            ),
            np.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    pivots[:, 1],
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    pivots[:, 2],
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    pivots[:, 3],
                ],
                1,
            ),
        ],
        axis=1,
    )
    q = outer[np.arange(m.shape[0]), pivots.argmax(axis=1)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


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


# -- weights and trimming ---------------------------------------------------------------------
def region_weights(
    opacities: np.ndarray | None = None, backprojection_weights: np.ndarray | None = None
) -> np.ndarray | None:
    """[M] geometry weight of each Gaussian: opacity x min(1, Σw / median Σw).

    Σw is the back-projection weight (how much the views saw the Gaussian; 0 = never seen);
    saturating it at the median of the seen Gaussians lets rarely seen ones (typical floaters)
    count less without letting large, often-seen ones dominate. None when neither is given.

    Args:
        opacities: [M] in [0, 1]. backprojection_weights: [M] >= 0.
    """
    if opacities is None and backprojection_weights is None:
        return None
    m = len(opacities) if opacities is not None else len(backprojection_weights)
    w = np.ones(m) if opacities is None else _vector(opacities, "opacities", m)
    bp = _vector(backprojection_weights, "backprojection_weights", m)
    if bp is not None:
        seen = bp[bp > 0]
        median = float(np.median(seen)) if seen.size else 0.0
        w = w * (np.minimum(1.0, bp / median) if median > 0 else 0.0)
    return w


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value v with (weight of values <= v) >= q x total weight."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    if cum[-1] <= 0:
        return float(values[order[-1]])
    i = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order[min(i, len(order) - 1)]])


def weighted_median_point(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[3] coordinate-wise weighted median."""
    return np.array([weighted_quantile(points[:, j], weights, 0.5) for j in range(3)])


def trim_outliers(
    points: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    quantile: float = 0.9,
    fence: float = 2.0,
) -> np.ndarray:
    """[M] bool: the Gaussians that belong to the bulk of the region.

    Kept: positive weight (when any weight is positive) and a distance from the weighted
    median within ``fence`` x the weighted ``quantile`` of the distances. A compact object
    keeps every point (its farthest point lies within about 1.5x its 90% distance); a floater
    several object sizes away is dropped whatever its weight.

    Args:
        points: [M, 3]. weights: [M] >= 0 or None (all 1).
        quantile: in (0, 1]. fence: >= 1; ``inf`` keeps everything with positive weight.
    """
    p = _points(points, "points")
    w = np.ones(len(p)) if weights is None else _vector(weights, "weights", len(p))
    if not (0.0 < quantile <= 1.0 and fence >= 1.0):
        raise QueryError(
            f"trim quantile must lie in (0, 1] and fence be >= 1, got {quantile} and {fence}"
        )
    if not (w > 0).any():
        w = np.ones(len(p))
    keep = w > 0
    if not np.isfinite(fence) or keep.sum() < 3:
        return keep
    centre = weighted_median_point(p[keep], w[keep])
    d = np.linalg.norm(p - centre, axis=1)
    limit = fence * weighted_quantile(d[keep], w[keep], quantile)
    return keep & (d <= limit + 1e-9 * (1.0 + float(np.abs(p).max())))


def pca_box(
    points: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA-oriented box tight around the points.

    Args:
        points: [M, 3]. weights: [M] >= 0 weights of the covariance (None = equal); the box
            still covers every point.

    Returns:
        center: [3] box centre. axes: [3, 3] rows unit, right-handed, variance descending;
        the first two canonically signed, the third their cross product.
        extent: [3] full side lengths along the axes (covers every point).
    """
    p = _points(points, "points")
    w = np.ones(len(p)) if weights is None else _vector(weights, "weights", len(p))
    if w.sum() <= 0:
        w = np.ones(len(p))
    mean = (w[:, None] * p).sum(axis=0) / w.sum()
    d = p - mean
    if p.shape[0] < 2:
        axes = np.eye(3)
    else:
        # eigh of a symmetric 3x3 never fails and always returns an orthonormal basis, also
        # for rank-deficient (collinear, planar) sets: the null directions are just arbitrary.
        _, vecs = np.linalg.eigh((w[:, None] * d).T @ d / w.sum())
        axes = vecs[:, ::-1].T.copy()
        axes[0] = canonical_sign(axes[0])
        axes[1] = canonical_sign(axes[1])
        axes[2] = np.cross(axes[0], axes[1])
    proj = d @ axes.T
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    return mean + ((lo + hi) / 2) @ axes, axes, hi - lo


# -- normal orientation -----------------------------------------------------------------------
def _unit_rows(v: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(length > 0, v / np.maximum(length, 1e-300), 0.0)


def _orient_by(n: np.ndarray, toward: np.ndarray, todo: np.ndarray, min_cos: float):
    """(signs [M] in {-1, 0, +1}) for rows in ``todo`` whose normal makes |cos| >= min_cos
    with ``toward`` ([M, 3] or [3]); 0 where undecided."""
    t = _unit_rows(np.broadcast_to(toward, n.shape).astype(np.float64))
    cos = (n * t).sum(axis=1)
    decided = todo & (np.abs(cos) >= min_cos) & (np.linalg.norm(t, axis=1) > 0)
    return np.where(decided, np.sign(cos), 0.0)


def orient_normals(
    means: np.ndarray,
    normals: np.ndarray,
    *,
    view_points: np.ndarray | None = None,
    camera_centers: np.ndarray | None = None,
    scene_center: np.ndarray | None = None,
    region_center: np.ndarray | None = None,
    min_cos: float = MIN_ORIENT_COS,
) -> tuple[np.ndarray, np.ndarray]:
    """Orient each normal outward; say how.

    In order, a normal is flipped to point toward:

    1. its Gaussian's ``view_points`` row (where the cameras that saw it stood), when that
       point lies clearly on one side of the Gaussian's tangent plane (|cos| >= ``min_cos``);
       a Gaussian seen from both sides has its mean viewpoint near the plane and waits;
    2. the side its already oriented neighbours agree on (sum of n_i . n_j over the nearest
       oriented Gaussians, at most :data:`ORIENT_NEIGHBOURS` of its
       2 x :data:`ORIENT_NEIGHBOURS` nearest, with |cos| >= 0.5; repeated while that
       orients more of them);
    3. away from ``region_center`` (default: the mean of ``means``): outward for a compact
       object, so the fallback never points into it;
    4. the mean of ``camera_centers``; 5. away from ``scene_center``;

    each only when decisive (|cos| >= ``min_cos``). The rest keep their sign, unoriented.

    Args:
        means, normals: [M, 3]. view_points: [M, 3] (rows equal to the mean = unknown).
        camera_centers: [V, 3]. scene_center, region_center: [3].

    Returns:
        oriented: [M, 3] unit normals. how: [M] int8 index into :data:`ORIENTED_BY`, or
        :data:`UNORIENTED` (-1).
    """
    p = _points(means, "means")
    n = _unit_rows(_points(normals, "normals"))
    if n.shape != p.shape:
        raise QueryError(f"normals {list(n.shape)} must match means {list(p.shape)}")
    m = p.shape[0]
    sign = np.zeros(m)
    how = np.full(m, UNORIENTED, np.int8)

    def settle(new: np.ndarray, code: int) -> None:
        fresh = (sign == 0) & (new != 0)
        sign[fresh] = new[fresh]
        how[fresh] = code

    scale = 1e-9 * (1.0 + (float(np.abs(p).max()) if m else 0.0))
    if view_points is not None:
        vp = _points(view_points, "view_points")
        if vp.shape != p.shape:
            raise QueryError(f"view_points {list(vp.shape)} must match means {list(p.shape)}")
        own = vp - p
        known = np.linalg.norm(own, axis=1) > scale
        settle(_orient_by(n, own, known, min_cos), 0)
    if (sign != 0).any() and (sign == 0).any():
        from scipy.spatial import cKDTree

        # One neighbour list for every pass; each pass lets the Gaussians oriented so far vote.
        k = min(2 * ORIENT_NEIGHBOURS + 1, m)
        _, nb = cKDTree(p).query(p, k=k)
        nb = nb.reshape(m, k)[:, 1:]
        for _ in range(16):
            todo = np.flatnonzero(sign == 0)
            if todo.size == 0:
                break
            near = nb[todo]
            voters = sign[near] != 0
            # the ORIENT_NEIGHBOURS nearest oriented ones (the lists are sorted by distance)
            voters &= np.cumsum(voters, axis=1) <= ORIENT_NEIGHBOURS
            dots = np.einsum("ij,ikj->ik", n[todo], n[near] * sign[near][..., None])
            vote = np.where(voters & (np.abs(dots) >= NEIGHBOUR_MIN_COS), dots, 0.0).sum(axis=1)
            new = np.zeros(m)
            new[todo] = np.sign(vote)
            if not new.any():
                break
            settle(new, 1)
    if (sign == 0).any():
        centre = (
            p.mean(axis=0) if region_center is None else _points(region_center, "region_center")[0]
        )
        settle(_orient_by(n, p - centre, sign == 0, min_cos), 2)
    if (sign == 0).any() and camera_centers is not None and np.size(camera_centers):
        cams = _points(camera_centers, "camera_centers").mean(axis=0)
        settle(_orient_by(n, cams - p, sign == 0, min_cos), 3)
    if (sign == 0).any() and scene_center is not None:
        centre = (
            p.mean(axis=0) if region_center is None else _points(region_center, "region_center")[0]
        )
        outward = centre - _points(scene_center, "scene_center")[0]
        if np.linalg.norm(outward) > scale:
            settle(_orient_by(n, outward, sign == 0, min_cos), 4)
    oriented = n * np.where(sign < 0, -1.0, 1.0)[:, None]
    return oriented, how


def approach_direction(
    means: np.ndarray,
    normals: np.ndarray,
    *,
    camera_centers: np.ndarray | None = None,
    scene_center: np.ndarray | None = None,
    view_points: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    region_center: np.ndarray | None = None,
) -> np.ndarray | None:
    """Unit approach direction: minus the weighted mean outward normal of the region.

    Normals are oriented by :func:`orient_normals`; unoriented ones do not vote. Returns None
    when the oriented normals cancel out (mean shorter than :data:`MIN_NORMAL_AGREEMENT`) or
    no normal could be oriented.

    Args:
        means, normals: [M, 3]. weights: [M] >= 0 (None = equal).
        camera_centers, scene_center, view_points, region_center: see :func:`orient_normals`.
    """
    p = _points(means, "means")
    oriented, how = orient_normals(
        p,
        normals,
        view_points=view_points,
        camera_centers=camera_centers,
        scene_center=scene_center,
        region_center=region_center,
    )
    w = np.ones(len(p)) if weights is None else _vector(weights, "weights", len(p))
    w = np.where(how >= 0, w, 0.0)
    if w.sum() <= 0:
        return None
    mean = (w[:, None] * oriented).sum(axis=0) / w.sum()
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm < MIN_NORMAL_AGREEMENT:
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
    weights: np.ndarray | None = None,
    trim: bool = True,
    approach: bool = True,
) -> RegionSummary:
    """Centroid, AABB, PCA box, principal axis and approach direction of M Gaussians.

    Floaters are trimmed first (:func:`trim_outliers`, when ``trim``); the centroid and the
    PCA axes are weighted by ``weights``; the boxes cover every kept Gaussian.

    Args:
        means: [M, 3] centres (M >= 1).
        scales, quats: [M, 3] scales (or log-scales), [M, 4] w x y z: give the normals.
        normals: [M, 3] normals instead of scales/quats.
        camera_centers: [V, 3] positions of the cameras that saw the region.
        scene_center: [3] centroid of the whole scene (orientation fallback).
        view_points: [M, 3] where the cameras that saw each Gaussian stood (see
            :func:`orient_normals`); the best orientation when known.
        weights: [M] >= 0 geometry weights (:func:`region_weights`); None = equal.
        trim: drop outliers before measuring.
        approach: compute the approach direction (needs normals or scales + quats).
    """
    p = _points(means, "means")
    if p.shape[0] == 0:
        raise QueryError("cannot summarise an empty region")
    w = np.ones(len(p)) if weights is None else _vector(weights, "weights", len(p))
    keep = trim_outliers(p, w) if trim else np.ones(len(p), bool)
    kp, kw = p[keep], w[keep]
    if kw.sum() <= 0:
        kw = np.ones(len(kp))
    center, axes, extent = pca_box(kp, kw)
    centroid = (kw[:, None] * kp).sum(axis=0) / kw.sum()
    direction = None
    if approach and normals is None and scales is not None and quats is not None:
        normals = gaussian_normals(scales, quats)
    if approach and normals is not None:
        nrm = _points(normals, "normals")
        if nrm.shape != p.shape:
            raise QueryError(f"normals {list(nrm.shape)} must match means {list(p.shape)}")
        vp = None
        if view_points is not None:
            vp = _points(view_points, "view_points")
            if vp.shape != p.shape:
                raise QueryError(f"view_points {list(vp.shape)} must match means {list(p.shape)}")
            vp = vp[keep]
        direction = approach_direction(
            kp,
            nrm[keep],
            camera_centers=camera_centers,
            scene_center=scene_center,
            view_points=vp,
            weights=kw,
            region_center=centroid,
        )
    return RegionSummary(
        centroid=centroid,
        aabb_min=kp.min(axis=0),
        aabb_max=kp.max(axis=0),
        obb_center=center,
        obb_axes=axes,
        obb_extent=extent,
        principal_axis=axes[0].copy(),
        approach=direction,
        num_trimmed=int((~keep).sum()),
    )
