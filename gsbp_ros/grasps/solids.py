"""The scene's opaque Gaussians as solid ellipsoids, with a spatial index (k-d tree)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from gsbp_ros.grasps.options import GraspError
from gsbp_ros.regions import quat_to_rotmat


@dataclass
class CollisionModel:
    """The opaque Gaussians of a scene as solid ellipsoids, with a spatial index.

    Attributes:
        index: [K] scene index of each opaque Gaussian.
        means: [K, 3] centres.
        axes: [K, 3, 3] principal axes scaled by ``support_sigmas`` x scale (columns): the
            support's half extent along a unit direction a is ``|axes^T a|``.
        radius: [K] bounding radius of the support (its longest half axis).
        normals: [K, 3] unit shortest axes (surface normals, unoriented).
        opacity: [K] opacities.
        slot: [N] position of each scene Gaussian in the model, -1 if not opaque.
        scene_diagonal: bounding-box diagonal of the whole scene.
    """

    index: np.ndarray
    means: np.ndarray
    axes: np.ndarray
    radius: np.ndarray
    normals: np.ndarray
    opacity: np.ndarray
    slot: np.ndarray
    scene_diagonal: float
    opacity_threshold: float
    support_sigmas: float
    _tree: object = field(default=None, repr=False)
    _small: np.ndarray | None = field(default=None, repr=False)
    _big: np.ndarray | None = field(default=None, repr=False)
    _cap: float = field(default=0.0, repr=False)
    _cov: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_gaussians(
        cls,
        means: np.ndarray,
        quats: np.ndarray,
        log_scales: np.ndarray,
        opacities: np.ndarray,
        *,
        opacity_threshold: float = 0.5,
        support_sigmas: float = 2.0,
    ) -> CollisionModel:
        """Args: means [N, 3], quats [N, 4] (w x y z), log_scales [N, 3], opacities [N] in
        [0, 1] (after the sigmoid)."""
        mu = np.asarray(means, dtype=np.float64)
        n = mu.shape[0]
        op = np.asarray(opacities, dtype=np.float64).reshape(-1)
        ls = np.asarray(log_scales, dtype=np.float64)
        q = np.asarray(quats, dtype=np.float64)
        if mu.shape != (n, 3) or ls.shape != (n, 3) or q.shape != (n, 4) or op.shape != (n,):
            raise GraspError(
                f"scene arrays disagree: means {list(mu.shape)}, quats {list(q.shape)}, "
                f"log_scales {list(ls.shape)}, opacities {list(op.shape)}"
            )
        if n == 0:
            raise GraspError("the scene has no Gaussians")
        keep = np.flatnonzero(op >= opacity_threshold)
        rot = quat_to_rotmat(q[keep]) if keep.size else np.zeros((0, 3, 3))
        scales = np.exp(ls[keep]) * support_sigmas
        axes = rot * scales[:, None, :]
        slot = np.full(n, -1, np.int64)
        slot[keep] = np.arange(keep.size)
        lo, hi = mu.min(axis=0), mu.max(axis=0)
        return cls(
            index=keep,
            means=mu[keep],
            axes=axes,
            radius=scales.max(axis=1) if keep.size else np.zeros(0),
            normals=rot[np.arange(keep.size), :, np.argmin(ls[keep], axis=1)]
            if keep.size
            else np.zeros((0, 3)),
            opacity=op[keep],
            slot=slot,
            scene_diagonal=float(np.linalg.norm(hi - lo)),
            opacity_threshold=float(opacity_threshold),
            support_sigmas=float(support_sigmas),
        )

    def __len__(self) -> int:
        return int(self.index.size)

    def support_covariances(self) -> np.ndarray:
        """[K, 6] (xx yy zz xy xz yz) of ``axes @ axes^T``: the support's half extent along a
        unit a is sqrt(a' S a)."""
        if self._cov is None:
            s = np.einsum("kij,klj->kil", self.axes, self.axes)
            self._cov = np.ascontiguousarray(
                np.stack(
                    [s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 0, 1], s[:, 0, 2], s[:, 1, 2]], 1
                )
            )
        return self._cov

    def _index(self):
        """k-d tree over the Gaussians of ordinary size (radius <= the 99th percentile); the
        few larger ones are tested against every point."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._cap = float(np.quantile(self.radius, 0.99)) if len(self) else 0.0
            self._small = np.flatnonzero(self.radius <= self._cap)
            self._big = np.flatnonzero(self.radius > self._cap)
            self._tree = cKDTree(self.means[self._small])
        return self._tree

    def near(self, points: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """(point row, model index) of every Gaussian whose support comes within ``reach`` of
        a point: ``|mean - point| <= reach + radius``. Sorted by point row.

        The k-d tree crops the scene to the points' neighbourhood; within the crop the
        distances are dense (a few points against a few thousand Gaussians), unless the crop
        is large, where the tree answers point by point.
        """
        tree = self._index()
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        big = self._big
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        crop = self._small[
            tree.query_ball_point((lo + hi) / 2, np.linalg.norm(hi - lo) / 2 + reach + self._cap)
        ]
        if (crop.size + big.size) * len(pts) > DENSE_PAIRS:
            hits = tree.query_ball_point(pts, reach + self._cap, return_sorted=True)
            counts = np.fromiter((len(h) for h in hits), np.int64, len(hits))
            flat = np.fromiter(itertools.chain.from_iterable(hits), np.int64, int(counts.sum()))
            rows = np.repeat(np.arange(len(pts)), counts)
            cols = self._small[flat]
            ok = _within(self.means[cols] - pts[rows], reach + self.radius[cols])
            rows, cols = rows[ok], cols[ok]
            if big.size:
                r2, c2 = _dense_near(self.means[big], self.radius[big], pts, reach)
                rows, cols = np.concatenate([rows, r2]), np.concatenate([cols, big[c2]])
                order = np.argsort(rows, kind="stable")
                rows, cols = rows[order], cols[order]
            return rows, cols
        crop = np.concatenate([np.sort(crop), big])
        rows, c = _dense_near(self.means[crop], self.radius[crop], pts, reach)
        return rows, crop[c]


#: Above this many (point, Gaussian) distances, :meth:`CollisionModel.near` asks the tree.
DENSE_PAIRS = 4_000_000


def _within(d: np.ndarray, limit: np.ndarray) -> np.ndarray:
    return (d * d).sum(axis=-1) <= limit * limit


def _dense_near(
    means: np.ndarray, radius: np.ndarray, pts: np.ndarray, reach: float, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(point row, column) with ``|means[col] - pts[row]| <= reach + radius[col]``, row-major.

    Squared distances as |m|^2 - 2 p.m + |p|^2 (one matrix product per chunk of points), in
    coordinates centred on the Gaussians so that nothing large cancels.
    """
    if len(means) == 0 or len(pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    centre = means.mean(axis=0)
    m, p = means - centre, pts - centre
    mm = np.einsum("ij,ij->i", m, m)
    limit = (reach + radius) ** 2
    rows, cols = [], []
    for s in range(0, len(p), chunk):
        q = p[s : s + chunk]  # [chunk, G] distances: a few MB per chunk
        d2 = mm[None] - 2.0 * (q @ m.T) + np.einsum("ij,ij->i", q, q)[:, None]
        r, c = np.nonzero(d2 <= limit[None])
        rows.append(r + s)
        cols.append(c)
    return np.concatenate(rows), np.concatenate(cols)
