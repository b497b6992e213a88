"""Brute-force restatement of :func:`gsbp_ros.grasps.evaluate.evaluate_candidates`: every
Gaussian of the scene for every candidate, the closing segment merged interval by interval,
and the gripper's boxes tested one by one."""

from __future__ import annotations

import numpy as np

from gsbp_ros.grasps.contacts import Contacts
from gsbp_ros.grasps.evaluate import CandidateEval, outcomes, safe_ratio
from gsbp_ros.grasps.options import END_FRACTION
from gsbp_ros.grasps.solids import CollisionModel
from gsbp_ros.gripper import ParallelJawGripper


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
            out["antip"][i] = min(safe_ratio((op * cos_n)[e].sum(), op[e].sum()) for e in ends)
            out["share"][i] = safe_ratio((op * in_region[members]).sum(), op.sum())
            # The gripper's boxes at the final opening, the origin moved to the middle.
            shift = np.array([0.0, (lo + hi) / 2, 0.0])
            boxes = g.boxes(hi - lo + 2 * cl)
            collide[i] = any(overlaps(ctr + shift, half).any() for ctr, half in boxes)
            col_center = [0.0, (lo + hi) / 2, -(fl + pd) - ad / 2]
            behind = overlaps(col_center, [hw, g.palm_half_width, ad / 2])
            out["free"][i] = (-(fl + pd) - (z + ez)[behind]).min() if behind.any() else np.inf
    return outcomes(
        g,
        min_antipodality,
        out["lo"],
        out["hi"],
        collide,
        out["antip"],
        out["share"],
        out["free"],
    )
