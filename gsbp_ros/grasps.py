"""Ranked antipodal parallel-jaw grasps on a region of Gaussians, checked against the scene.

How a grasp is made (every length in scene units; frame convention in :mod:`gsbp_ros.gripper`):

1. **Contacts.** Up to ``num_contacts`` opaque Gaussians of the region are drawn (seeded,
   weighted by opacity x region score). A contact's surface normal (its shortest axis) is the
   closing direction y: squeezing along the normal is what makes a grasp antipodal.
2. **Approaches.** ``num_approaches`` directions z around y, evenly spaced; the first comes
   from where the cameras that saw the contact stood (the field's viewpoints), i.e. through
   space the views showed to be empty.
3. **Closing segment.** Every opaque Gaussian whose support (``support_sigmas`` ellipsoid)
   reaches into the fingers' slab (x within the finger width, z from the fingertips back
   over the finger length) is projected onto the closing line as an interval. Intervals
   closer than a finger (``finger_thickness`` + 2 ``clearance``) merge: a finger cannot pass
   between them. The merged stretch that holds the contact is what the fingers enclose; the
   grasp origin moves to its middle and the opening is its length + 2 ``clearance``, which
   must not exceed ``max_opening``. By construction the fingers then sit in free space.
4. **Collision.** Fingers and palm (boxes, :meth:`ParallelJawGripper.boxes`) against every
   opaque Gaussian of the scene (opacity >= ``collision_opacity``), the region's own too:
   a Gaussian collides when its support overlaps a box on each of the box's three axes.
5. **Ranking** (each term in [0, 1]): antipodality (how well the surface normals at both ends
   of the closing segment line up with it), in_region (opacity-weighted share of the enclosed
   Gaussians that belong to the region), clearance (free length behind the palm along the
   approach, up to ``approach_distance``) and region_score (the contact's score over the
   region's best). Near-duplicates (closer than half a finger width, approaches within
   ``nms_angle_deg``) are suppressed; the best ``max_grasps`` are returned.

Two implementations of steps 3-4 and the terms: :func:`evaluate_candidates` (a k-d tree finds
the Gaussians near each contact, then everything is vectorised over (candidate, Gaussian)
pairs) and :func:`evaluate_candidates_reference` (every Gaussian of the scene for every
candidate, the gripper's boxes tested one by one); tests hold them equal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, fields

import numpy as np

from gsbp_ros.errors import QueryError
from gsbp_ros.gripper import GripperError, ParallelJawGripper
from gsbp_ros.regions import canonical_sign, quat_to_rotmat
from gsbp_ros.results import GRASP_TERMS, GraspSet

#: Outcome of a candidate (:attr:`CandidateEval.reason`).
FEASIBLE, TOO_WIDE, COLLISION, NOT_ANTIPODAL = 0, 1, 2, 3
#: A region needs this many opaque Gaussians before grasps are sampled on it.
MIN_REGION_GAUSSIANS = 3
#: Share of the closing segment's centre span, at each end, whose normals give antipodality.
END_FRACTION = 0.1


class GraspError(QueryError):
    """A grasp request that cannot be served (empty region, bad options)."""


@dataclass(frozen=True)
class GraspOptions:
    """Sampling and ranking options (no lengths: those belong to the gripper).

    Attributes:
        max_grasps: grasps returned at most (>= 1).
        num_contacts: contact Gaussians sampled from the region.
        num_approaches: approach directions per contact, evenly spaced around the normal.
        seed: the sampler's seed; equal inputs and seed give equal grasps.
        collision_opacity: Gaussians at least this opaque are solid.
        support_sigmas: a Gaussian's solid extent, in standard deviations along each axis.
        min_antipodality: smallest accepted antipodality (cosine between the closing
            direction and the surface normals at its ends; 0.8 ~ a friction cone of 37 deg).
        weights: weights of (antipodality, in_region, clearance, region_score).
        nms_angle_deg: grasps closer than half a finger width whose approaches differ by less
            than this are duplicates; only the better one is kept.
    """

    max_grasps: int = 10
    num_contacts: int = 64
    num_approaches: int = 8
    seed: int = 0
    collision_opacity: float = 0.5
    support_sigmas: float = 2.0
    min_antipodality: float = 0.8
    weights: tuple[float, float, float, float] = (0.35, 0.25, 0.2, 0.2)
    nms_angle_deg: float = 30.0

    def validated(self) -> GraspOptions:
        checks = [
            (self.max_grasps >= 1, "max_grasps must be at least 1"),
            (self.num_contacts >= 1, "num_contacts must be at least 1"),
            (self.num_approaches >= 1, "num_approaches must be at least 1"),
            (0.0 <= self.collision_opacity < 1.0, "collision_opacity must lie in [0, 1)"),
            (self.support_sigmas > 0, "support_sigmas must be positive"),
            (0.0 <= self.min_antipodality <= 1.0, "min_antipodality must lie in [0, 1]"),
            (
                len(self.weights) == len(GRASP_TERMS)
                and all(w >= 0 for w in self.weights)
                and sum(self.weights) > 0,
                f"weights must be {len(GRASP_TERMS)} non-negative numbers, not all zero",
            ),
            (0.0 <= self.nms_angle_deg <= 180.0, "nms_angle_deg must lie in [0, 180]"),
        ]
        numbers = [self.collision_opacity, self.support_sigmas, self.min_antipodality]
        if not all(math.isfinite(float(v)) for v in [*numbers, *self.weights]):
            raise GraspError(f"grasp options must be finite numbers: {self}")
        for ok, message in checks:
            if not ok:
                raise GraspError(f"{message}: {self}")
        return self


# -- the scene as solids ------------------------------------------------------------------------
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


# -- contacts -----------------------------------------------------------------------------------
@dataclass
class Contacts:
    """Sampled contact Gaussians with their closing axes and approach bases.

    Candidate ``c * K + k`` (K approaches) approaches contact c along
    ``z = cos(theta0 + 2 pi k / K) a + sin(...) b`` with closing axis y.

    Attributes:
        slot: [C] model index of each contact. points: [C, 3].
        y, a, b: [C, 3] closing axis and an orthonormal basis of the plane around it
            (b = y x a). theta0: [C] angle of the first approach.
        score: [C] region score of the contact over the region's best, in [0, 1].
    """

    slot: np.ndarray
    points: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta0: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.slot.size)

    def subset(self, rows: slice) -> Contacts:
        return Contacts(
            *(getattr(self, f)[rows] for f in ("slot", "points", "y", "a", "b", "theta0", "score"))
        )

    def approach_axes(self, num_approaches: int) -> tuple[np.ndarray, np.ndarray]:
        """([C, K, 3] x axes, [C, K, 3] z axes) of every candidate."""
        th = self.theta0[:, None] + 2 * np.pi * np.arange(num_approaches)[None] / num_approaches
        cs, sn = np.cos(th)[..., None], np.sin(th)[..., None]
        z = cs * self.a[:, None] + sn * self.b[:, None]
        x = -sn * self.a[:, None] + cs * self.b[:, None]
        return x, z


def sample_contacts(
    model: CollisionModel,
    region_indices: np.ndarray,
    region_scores: np.ndarray | None = None,
    *,
    view_points: np.ndarray | None = None,
    options: GraspOptions | None = None,
) -> Contacts:
    """Draw the contacts of a region (see the module docstring, steps 1-2).

    Args:
        region_indices: [M] scene indices. region_scores: [M] >= 0 (None = all 1).
        view_points: [N, 3] where the cameras that saw each scene Gaussian stood (rows equal
            to the Gaussian's mean, or zeros, = unknown).
    """
    options = options or GraspOptions()
    idx = np.asarray(region_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise GraspError("the region is empty: nothing to grasp")
    if idx.min() < 0 or idx.max() >= model.slot.size:
        raise GraspError(f"region indices must lie in [0, {model.slot.size})")
    scores = np.ones(idx.size) if region_scores is None else np.asarray(region_scores, float)
    if scores.shape != idx.shape or not np.isfinite(scores).all() or (scores < 0).any():
        raise GraspError(f"region scores must be [{idx.size}] finite non-negative numbers")
    slots = model.slot[idx]
    solid = slots >= 0
    if int(solid.sum()) < MIN_REGION_GAUSSIANS:
        raise GraspError(
            f"the region has {int(solid.sum())} Gaussians with opacity >= "
            f"{model.opacity_threshold:g} (of {idx.size}); a grasp needs at least "
            f"{MIN_REGION_GAUSSIANS}"
        )
    slots, scores = slots[solid], scores[solid]
    best = float(scores.max())
    rel = scores / best if best > 0 else np.ones_like(scores)
    rng = np.random.default_rng(options.seed)
    p = model.opacity[slots] * (rel + 1e-3) + 1e-12
    count = min(options.num_contacts, slots.size)
    pick = rng.choice(slots.size, size=count, replace=False, p=p / p.sum())
    slot = slots[pick]
    points = model.means[slot]
    y = np.array([canonical_sign(v) for v in model.normals[slot]])
    # The first approach comes from the contact's cameras (projected off the normal); where
    # unknown, from an arbitrary perpendicular at a seeded angle.
    helper = np.eye(3)[np.argmin(np.abs(y), axis=1)]
    a = _unit(np.cross(y, helper))
    theta0 = rng.uniform(0.0, 2 * np.pi / options.num_approaches, size=count)
    if view_points is not None:
        vp = np.asarray(view_points, dtype=np.float64)[model.index[slot]]
        toward = vp - points
        off = toward - (toward * y).sum(axis=1, keepdims=True) * y
        norm_t = np.linalg.norm(toward, axis=1)
        known = np.linalg.norm(off, axis=1) > 0.1 * np.maximum(norm_t, 1e-300)
        a = np.where(known[:, None], -_unit(off), a)
        theta0 = np.where(known, 0.0, theta0)
    b = np.cross(y, a)
    return Contacts(slot=slot, points=points, y=y, a=a, b=b, theta0=theta0, score=rel[pick])


def _ratio(num, den):
    """num / den, 0 where den is 0 (Gaussians of zero opacity carry no weight)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)


# -- candidate evaluation -----------------------------------------------------------------------
@dataclass
class CandidateEval:
    """Every candidate's outcome ([C * K] arrays, candidate c * K + k).

    Attributes:
        reason: FEASIBLE, TOO_WIDE, COLLISION or NOT_ANTIPODAL (first failing check).
        offset: shift of the grasp origin from the contact along y (the closing segment's
            middle). width: opening (closing segment + 2 clearance).
        antipodality, in_region, clearance: ranking terms in [0, 1].
    """

    reason: np.ndarray
    offset: np.ndarray
    width: np.ndarray
    antipodality: np.ndarray
    in_region: np.ndarray
    clearance: np.ndarray


def _reach(gripper: ParallelJawGripper) -> tuple[float, float]:
    """(half span along y that matters, distance from the contact that bounds the fingers
    and the palm of every candidate of the contact)."""
    g = gripper
    y_env = g.max_opening + g.finger_thickness + g.clearance
    z_env = g.finger_length + g.palm_depth
    return y_env, math.sqrt(y_env**2 + z_env**2 + (g.finger_width / 2) ** 2)


def _finish(
    gripper: ParallelJawGripper,
    min_antipodality: float,
    chunk_lo: np.ndarray,
    chunk_hi: np.ndarray,
    collide: np.ndarray,
    antip: np.ndarray,
    in_region: np.ndarray,
    free: np.ndarray,
) -> CandidateEval:
    width = chunk_hi - chunk_lo + 2 * gripper.clearance
    reason = np.full(width.shape, FEASIBLE, np.int8)
    reason[antip < min_antipodality] = NOT_ANTIPODAL
    reason[collide] = COLLISION
    reason[width > gripper.max_opening] = TOO_WIDE
    return CandidateEval(
        reason=reason,
        offset=(chunk_lo + chunk_hi) / 2,
        width=width,
        antipodality=antip,
        in_region=in_region,
        clearance=np.clip(free, 0.0, gripper.approach_distance) / gripper.approach_distance,
    )


def evaluate_candidates(
    model: CollisionModel,
    contacts: Contacts,
    in_region: np.ndarray,
    gripper: ParallelJawGripper,
    *,
    num_approaches: int,
    min_antipodality: float,
) -> CandidateEval:
    """Closing segment, collisions and terms of every candidate (fast path).

    Contacts are evaluated in blocks of :data:`CONTACT_BLOCK`: every step is vectorised
    over a block's (candidate, Gaussian) pairs, and the blocks' arrays stay small enough to
    be reused from one block to the next instead of faulting fresh memory in.

    Args:
        in_region: [K_model] bool, model Gaussians that belong to the region.
    """
    g = gripper
    parts = [
        _evaluate_block(
            model,
            contacts.subset(slice(s, s + CONTACT_BLOCK)),
            in_region,
            g,
            num_approaches,
            min_antipodality,
        )
        for s in range(0, len(contacts), CONTACT_BLOCK)
    ]
    out = CandidateEval(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(CandidateEval))
    )
    # Clearance only matters for the feasible ones: one more, narrow, query for them.
    ok = np.flatnonzero(out.reason == FEASIBLE)
    free = np.full(out.reason.size, np.inf)
    free[ok] = _free_behind_palm(model, contacts, ok, out.offset[ok], g, num_approaches)
    out.clearance = np.clip(free, 0.0, g.approach_distance) / g.approach_distance
    return out


#: Contacts per block of :func:`evaluate_candidates`.
CONTACT_BLOCK = 8


def _evaluate_block(
    model: CollisionModel,
    contacts: Contacts,
    in_region: np.ndarray,
    gripper: ParallelJawGripper,
    n_app: int,
    min_antipodality: float,
) -> CandidateEval:
    """:func:`evaluate_candidates` for a few contacts; clearance left at 1."""
    g = gripper
    n_cand = len(contacts) * n_app
    fl, pd = g.finger_length, g.palm_depth
    hw, t, cl = g.finger_width / 2, g.finger_thickness, g.clearance
    y_env = _reach(g)[0]

    # (contact, Gaussian) pairs within reach, in each contact's frame, and the approaches
    # for which each Gaussian can lie behind the fingertips.
    pc, pj, u, v, w, start, count = _pairs_and_windows(model, contacts, gripper, n_app)
    ey, aa, bb, ab = _support_terms(model, contacts, pc, pj)
    rows = np.repeat(np.arange(pc.size), count)
    first = np.cumsum(count) - count
    k = (start[rows] + np.arange(rows.size) - first[rows]) % n_app
    step = 2 * np.pi / n_app

    cand = pc[rows] * n_app + k
    th = contacts.theta0[:, None] + step * np.arange(n_app)[None]
    cs, sn = np.cos(th).ravel()[cand], np.sin(th).ravel()[cand]
    vr, wr = v[rows], w[rows]
    z = vr * cs
    z += wr * sn
    x = wr * cs
    x -= vr * sn
    # Squared half extents along z = cs a + sn b and x = cs b - sn a: they sum to aa + bb.
    ar, br = aa[rows], bb[rows]
    ez2 = cs * cs * ar
    ez2 += sn * sn * br
    ez2 += 2 * sn * cs * ab[rows]
    ex = np.sqrt(np.maximum(ar + br - ez2, 0.0))
    ez = np.sqrt(np.maximum(ez2, 0.0))
    # Rows that reach the fingers' or the palm's z range within the fingers' width.
    z_lo, z_hi = z - ez, z + ez
    near = np.flatnonzero((np.abs(x) <= hw + ex) & (z_lo <= 0) & (z_hi >= -(fl + pd)))
    cand, z_lo, z_hi = cand[near], z_lo[near], z_hi[near]
    ur, eyr, jr = u[rows[near]], ey[rows[near]], pj[rows[near]]
    slab = z_hi >= -fl
    palm = z_lo <= -fl

    # Closing segment: merge the slab's intervals along y, keep the stretch with the contact.
    s_c, s_u, s_e, s_j = cand[slab], ur[slab], eyr[slab], jr[slab]
    lo, hi = s_u - s_e, s_u + s_e
    # Sort by (candidate, lo) and run a maximum within each candidate: shifting candidate i
    # by i x offset (more than any interval's span) turns both into one-key operations.
    offset = 4.0 * (y_env + float(s_e.max(initial=0.0))) + 1.0
    order = np.argsort(lo + s_c * offset)
    s_c, s_u, s_j, lo, hi = s_c[order], s_u[order], s_j[order], lo[order], hi[order]
    run_hi = np.maximum.accumulate(hi + s_c * offset) - s_c * offset
    gap = t + 2 * cl
    new = np.ones(s_c.size, bool)
    new[1:] = (s_c[1:] != s_c[:-1]) | (lo[1:] > run_hi[:-1] + gap)
    cluster = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    c_lo, c_hi = lo[starts], np.maximum.reduceat(hi, starts)
    own = s_j == contacts.slot[s_c // n_app]
    mine = np.full(n_cand, -1, np.int64)
    mine[s_c[own]] = cluster[own]
    chunk_lo, chunk_hi = c_lo[mine], c_hi[mine]

    # Antipodality and region share over the enclosed Gaussians (one contiguous run each).
    member = cluster == mine[s_c]
    m_c, m_u, m_j = s_c[member], s_u[member], s_j[member]
    m_first = np.flatnonzero(np.r_[True, m_c[1:] != m_c[:-1]])
    u_max, u_min = np.maximum.reduceat(m_u, m_first), np.minimum.reduceat(m_u, m_first)
    band = END_FRACTION * (u_max - u_min)
    cos_n = np.abs(np.einsum("ij,ij->i", model.normals[m_j], contacts.y[m_c // n_app]))
    op = model.opacity[m_j]

    def mean_at(mask: np.ndarray) -> np.ndarray:
        wsum = np.add.reduceat(np.where(mask, op, 0.0), m_first)
        total = np.add.reduceat(np.where(mask, op * cos_n, 0.0), m_first)
        return _ratio(total, wsum)

    seg = np.repeat(np.arange(m_first.size), np.diff(np.r_[m_first, m_c.size]))
    antip = np.minimum(mean_at(m_u >= (u_max - band)[seg]), mean_at(m_u <= (u_min + band)[seg]))
    share = _ratio(np.add.reduceat(op * in_region[m_j], m_first), np.add.reduceat(op, m_first))

    # The fingers sit in free space by construction: each is `clearance` from the closing
    # segment and the next stretch along y is more than a finger plus two clearances away.
    # The palm spans the full opening behind them.
    mid = (chunk_lo + chunk_hi) / 2
    hit = palm & (np.abs(ur - mid[cand]) <= g.palm_half_width + eyr)
    collide = np.zeros(n_cand, bool)
    collide[cand[hit]] = True
    free = np.full(n_cand, np.inf)
    return _finish(g, min_antipodality, chunk_lo, chunk_hi, collide, antip, share, free)


def _free_behind_palm(
    model: CollisionModel,
    contacts: Contacts,
    cand: np.ndarray,
    offset: np.ndarray,
    gripper: ParallelJawGripper,
    n_app: int,
) -> np.ndarray:
    """[F] free length behind the palm of candidates ``cand`` (grasp origins moved by
    ``offset`` along y): the distance from the palm's back to the nearest support in the box
    the palm sweeps over ``approach_distance`` backwards (inf when that box is empty)."""
    g = gripper
    hw, fl, pd, ad = g.finger_width / 2, g.finger_length, g.palm_depth, g.approach_distance
    free = np.full(cand.size, np.inf)
    if cand.size == 0:
        return free
    c = cand // n_app
    xs, zs = contacts.approach_axes(n_app)
    axes = np.stack([xs.reshape(-1, 3)[cand], contacts.y[c], zs.reshape(-1, 3)[cand]], 2)
    centre = (
        contacts.points[c] + offset[:, None] * contacts.y[c] - axes[:, :, 2] * (fl + pd + ad / 2)
    )
    half = np.array([hw, g.palm_half_width, ad / 2])
    pr, pj = model.near(centre, float(np.linalg.norm(half)))
    local = np.einsum("pk,pkm->pm", model.means[pj] - centre[pr], axes[pr])
    coeff = np.stack([_quadratic_form(axes[:, :, i]) for i in range(3)], axis=2)  # [F, 6, 3]
    ext = np.sqrt(
        np.maximum(np.einsum("pk,pkm->pm", model.support_covariances()[pj], coeff[pr]), 0.0)
    )
    hit = (np.abs(local) <= half + ext).all(axis=1)
    np.minimum.at(free, pr[hit], ad / 2 - local[hit, 2] - ext[hit, 2])
    return free


def _pairs_and_windows(
    model: CollisionModel, contacts: Contacts, gripper: ParallelJawGripper, n_app: int
) -> tuple[np.ndarray, ...]:
    """(contact, Gaussian) pairs that may touch some candidate's gripper, and which approaches.

    A Gaussian's support fits in the sphere of its ``radius``; with that bound a pair is kept
    when it reaches the span along y that matters, lies within the gripper's length from the
    closing line, and some approach puts it behind the fingertips: the gripper spans
    |x| <= finger_width / 2 at z <= 0, i.e. a window of angles around the direction opposite
    the Gaussian (every angle when the Gaussian is near the closing line).

    Returns [P] arrays: contact c, model index j, the Gaussian's centre (u, v, w) along
    (y, a, b) of the contact, and the window: first approach index (mod K) and how many.
    """
    hw = gripper.finger_width / 2
    y_env, reach = _reach(gripper)
    z_env = gripper.finger_length + gripper.palm_depth
    pc, pj = model.near(contacts.points, reach)
    bounds = np.searchsorted(pc, np.arange(len(contacts) + 1))
    frames = np.stack([contacts.y, contacts.a, contacts.b], axis=2)  # [C, 3, 3] columns
    local = np.empty((pc.size, 3))
    for c in range(len(contacts)):
        s, e = bounds[c], bounds[c + 1]
        local[s:e] = (model.means[pj[s:e]] - contacts.points[c]) @ frames[c]
    u, v, w = local.T
    r = model.radius[pj]
    rho = np.sqrt(v * v + w * w)
    keep = np.flatnonzero((np.abs(u) <= y_env + r) & (rho <= math.hypot(z_env, hw) + r))
    pc, pj, u, v, w, r, rho = (a[keep] for a in (pc, pj, u, v, w, r, rho))
    lim = hw + r
    every = rho * rho <= lim * lim + r * r
    omega = np.arcsin(np.minimum(lim / np.maximum(rho, 1e-300), 1.0)) + 1e-9
    step = 2 * np.pi / n_app
    rel = np.arctan2(w, v) - np.pi - contacts.theta0[pc]
    k_lo = np.ceil((rel - omega) / step)
    count = np.floor((rel + omega) / step) - k_lo + 1
    count = np.where(every, n_app, np.clip(count, 0, n_app)).astype(np.int64)
    start = np.where(every, 0, k_lo).astype(np.int64)
    keep = np.flatnonzero(count)
    return pc[keep], pj[keep], u[keep], v[keep], w[keep], start[keep], count[keep]


def _support_terms(
    model: CollisionModel, contacts: Contacts, pc: np.ndarray, pj: np.ndarray
) -> tuple[np.ndarray, ...]:
    """[P] half extent ey of each Gaussian's support along its contact's y, and aa = a'Sa,
    bb = b'Sb, ab = a'Sb of its support covariance S, which give the half extent along any
    approach in the (a, b) plane: |(cos t) a + (sin t) b|_S."""
    bounds = np.searchsorted(pc, np.arange(len(contacts) + 1))
    cov = model.support_covariances()
    y, a, b = contacts.y, contacts.a, contacts.b
    coeff = np.stack(
        [_quadratic_form(y), _quadratic_form(a), _quadratic_form(b), _quadratic_form(a, b)], 2
    )  # [C, 6, 4]
    quad = np.empty((pc.size, 4))
    for c in range(len(contacts)):
        s, e = bounds[c], bounds[c + 1]
        quad[s:e] = cov[pj[s:e]] @ coeff[c]
    ey = np.sqrt(np.maximum(quad[:, 0], 0.0))
    return ey, quad[:, 1], quad[:, 2], quad[:, 3]


def _quadratic_form(p: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """[..., 6] coefficients c with (xx yy zz xy xz yz) . c = p' S q for a symmetric S."""
    q = p if q is None else q
    return np.stack(
        [
            p[..., 0] * q[..., 0],
            p[..., 1] * q[..., 1],
            p[..., 2] * q[..., 2],
            p[..., 0] * q[..., 1] + p[..., 1] * q[..., 0],
            p[..., 0] * q[..., 2] + p[..., 2] * q[..., 0],
            p[..., 1] * q[..., 2] + p[..., 2] * q[..., 1],
        ],
        axis=-1,
    )


def _box_overlap(x, y, z, ex, ey, ez, center, half) -> np.ndarray:
    """[K] bool: supports (centre x y z, half extents ex ey ez along the box axes) that
    overlap the box (centre, half) on all three axes."""
    return (
        (np.abs(x - center[0]) <= half[0] + ex)
        & (np.abs(y - center[1]) <= half[1] + ey)
        & (np.abs(z - center[2]) <= half[2] + ez)
    )


def evaluate_candidates_reference(
    model: CollisionModel,
    contacts: Contacts,
    in_region: np.ndarray,
    gripper: ParallelJawGripper,
    *,
    num_approaches: int,
    min_antipodality: float,
) -> CandidateEval:
    """The same as :func:`evaluate_candidates`, by brute force: every Gaussian of the model
    for every candidate, the closing segment merged interval by interval, and the fingers
    and palm tested as the boxes of :meth:`ParallelJawGripper.boxes`."""
    g = gripper
    fl, pd, ad = g.finger_length, g.palm_depth, g.approach_distance
    hw, t, cl = g.finger_width / 2, g.finger_thickness, g.clearance
    xs, zs = contacts.approach_axes(num_approaches)
    n_cand = len(contacts) * num_approaches
    out = {k: np.zeros(n_cand) for k in ("lo", "hi", "antip", "share", "free")}
    collide = np.zeros(n_cand, bool)
    for c in range(len(contacts)):
        y = contacts.y[c]
        d = model.means - contacts.points[c]
        ey = np.linalg.norm(np.einsum("jki,k->ji", model.axes, y), axis=1)
        u = d @ y
        for k in range(num_approaches):
            i = c * num_approaches + k
            xa, za = xs[c, k], zs[c, k]
            x, z = d @ xa, d @ za
            ex = np.linalg.norm(np.einsum("jki,k->ji", model.axes, xa), axis=1)
            ez = np.linalg.norm(np.einsum("jki,k->ji", model.axes, za), axis=1)

            local = (x, u, z, ex, ey, ez)

            def overlaps(center, half, local=local):
                return _box_overlap(*local, center, half)

            # Closing segment: all Gaussians in the fingers' slab, merged along y.
            slab = np.flatnonzero(overlaps([0.0, 0.0, -fl / 2], [hw, np.inf, fl / 2]))
            slab = slab[np.argsort(u[slab] - ey[slab], kind="stable")]
            clusters: list[list[int]] = []
            top = -np.inf
            for j in slab:
                if not clusters or u[j] - ey[j] > top + t + 2 * cl:
                    clusters.append([])
                    top = -np.inf
                clusters[-1].append(int(j))
                top = max(top, u[j] + ey[j])
            members = np.array(next(cl_ for cl_ in clusters if contacts.slot[c] in cl_))
            lo, hi = (u[members] - ey[members]).min(), (u[members] + ey[members]).max()
            out["lo"][i], out["hi"][i] = lo, hi
            mu = u[members]
            band = END_FRACTION * (mu.max() - mu.min())
            cos_n = np.abs(model.normals[members] @ y)
            op = model.opacity[members]
            ends = [mu >= mu.max() - band, mu <= mu.min() + band]
            out["antip"][i] = min(_ratio((op * cos_n)[e].sum(), op[e].sum()) for e in ends)
            out["share"][i] = _ratio((op * in_region[members]).sum(), op.sum())
            # The gripper's boxes at the final opening, the origin moved to the middle.
            shift = np.array([0.0, (lo + hi) / 2, 0.0])
            boxes = g.boxes(hi - lo + 2 * cl)
            collide[i] = any(overlaps(ctr + shift, half).any() for ctr, half in boxes)
            col_center = [0.0, (lo + hi) / 2, -(fl + pd) - ad / 2]
            behind = overlaps(col_center, [hw, g.palm_half_width, ad / 2])
            out["free"][i] = (-(fl + pd) - (z + ez)[behind]).min() if behind.any() else np.inf
    return _finish(
        g,
        min_antipodality,
        out["lo"],
        out["hi"],
        collide,
        out["antip"],
        out["share"],
        out["free"],
    )


# -- ranking ------------------------------------------------------------------------------------
def rank_grasps(
    contacts: Contacts,
    evals: CandidateEval,
    gripper: ParallelJawGripper,
    *,
    options: GraspOptions,
    name: str,
    model: CollisionModel,
) -> GraspSet:
    """Feasible candidates scored, near-duplicates suppressed, the best ``max_grasps``."""
    n_app = options.num_approaches
    xs, zs = contacts.approach_axes(n_app)
    xs, zs = xs.reshape(-1, 3), zs.reshape(-1, 3)
    ys = np.repeat(contacts.y, n_app, axis=0)
    pos = np.repeat(contacts.points, n_app, axis=0) + evals.offset[:, None] * ys
    terms = np.stack(
        [
            evals.antipodality,
            evals.in_region,
            evals.clearance,
            np.repeat(contacts.score, n_app),
        ],
        axis=1,
    )
    weights = np.asarray(options.weights, dtype=np.float64)
    score = terms @ weights / weights.sum()
    feasible = np.flatnonzero(evals.reason == FEASIBLE)
    order = feasible[np.argsort(-score[feasible], kind="stable")]
    cos_limit = math.cos(math.radians(options.nms_angle_deg))
    keep: list[int] = []
    for i in order:
        if len(keep) == options.max_grasps:
            break
        if keep:
            near = np.linalg.norm(pos[keep] - pos[i], axis=1) < gripper.finger_width / 2
            similar = zs[keep] @ zs[i] >= cos_limit
            if (near & similar).any():
                continue
        keep.append(int(i))
    sel = np.asarray(keep, dtype=np.int64)
    stats = {
        "candidates": int(evals.reason.size),
        "feasible": int(feasible.size),
        "too_wide": int((evals.reason == TOO_WIDE).sum()),
        "collision": int((evals.reason == COLLISION).sum()),
        "not_antipodal": int((evals.reason == NOT_ANTIPODAL).sum()),
    }
    if sel.size:
        message = (
            f"{sel.size} grasps on {name!r} from {stats['feasible']} feasible of "
            f"{stats['candidates']} candidates"
        )
    else:
        message = (
            f"no feasible grasp on {name!r}: of {stats['candidates']} candidates "
            f"{stats['too_wide']} are wider than max_opening {gripper.max_opening:g}, "
            f"{stats['collision']} collide with the scene, {stats['not_antipodal']} are not "
            f"antipodal (< {options.min_antipodality:g})"
        )
    return GraspSet(
        name=name,
        positions=pos[sel],
        rotations=np.stack([xs[sel], ys[sel], zs[sel]], axis=2),
        widths=evals.width[sel],
        scores=score[sel],
        terms={t: terms[sel, i] for i, t in enumerate(GRASP_TERMS)},
        contacts=model.index[contacts.slot[sel // n_app]],
        message=message,
        stats=stats,
    )


def plan_grasps(
    model: CollisionModel,
    region_indices: np.ndarray,
    region_scores: np.ndarray | None = None,
    *,
    gripper: ParallelJawGripper | None = None,
    options: GraspOptions | None = None,
    view_points: np.ndarray | None = None,
    name: str = "region",
    reference: bool = False,
) -> GraspSet:
    """Ranked parallel-jaw grasps on a region (the module docstring says how).

    Args:
        model: the scene's solids (:meth:`CollisionModel.from_gaussians`).
        region_indices: [M] scene indices of the region. region_scores: [M] >= 0.
        gripper: dimensions in scene units. options: sampling and ranking.
        view_points: [N, 3] where each Gaussian's cameras stood (FeatureField.viewpoints).
        reference: use the brute-force evaluation (tests, small scenes).

    Returns:
        a :class:`GraspSet`, best first; empty with the reason in ``message`` when no
        candidate is feasible. Raises :class:`GraspError` / :class:`GripperError` for bad
        input (empty or too small regions, bad gripper or options).
    """
    gripper = (gripper or ParallelJawGripper()).validated()
    options = (options or GraspOptions()).validated()
    gripper.check_fits(model.scene_diagonal)
    contacts = sample_contacts(
        model, region_indices, region_scores, view_points=view_points, options=options
    )
    in_region = np.zeros(len(model), bool)
    slots = model.slot[np.asarray(region_indices, dtype=np.int64)]
    in_region[slots[slots >= 0]] = True
    evaluate = evaluate_candidates_reference if reference else evaluate_candidates
    evals = evaluate(
        model,
        contacts,
        in_region,
        gripper,
        num_approaches=options.num_approaches,
        min_antipodality=options.min_antipodality,
    )
    return rank_grasps(contacts, evals, gripper, options=options, name=name, model=model)


__all__ = [
    "COLLISION",
    "FEASIBLE",
    "NOT_ANTIPODAL",
    "TOO_WIDE",
    "CandidateEval",
    "CollisionModel",
    "Contacts",
    "GraspError",
    "GraspOptions",
    "GripperError",
    "evaluate_candidates",
    "evaluate_candidates_reference",
    "plan_grasps",
    "rank_grasps",
    "sample_contacts",
]
