"""Closing segment, collisions and ranking terms of every candidate: the fast path (a k-d
tree finds the Gaussians near each contact, then everything is vectorised over (candidate,
Gaussian) pairs). :mod:`gsbp_ros.grasps.reference` restates it by brute force."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from gsbp_ros.grasps.contacts import Contacts
from gsbp_ros.grasps.options import (
    COLLISION,
    END_FRACTION,
    FEASIBLE,
    NOT_ANTIPODAL,
    TOO_WIDE,
)
from gsbp_ros.grasps.solids import CollisionModel
from gsbp_ros.gripper import ParallelJawGripper


def safe_ratio(num, den):
    """num / den, 0 where den is 0 (Gaussians of zero opacity carry no weight)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


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


def outcomes(
    gripper: ParallelJawGripper,
    min_antipodality: float,
    chunk_lo: np.ndarray,
    chunk_hi: np.ndarray,
    collide: np.ndarray,
    antip: np.ndarray,
    in_region: np.ndarray,
    free: np.ndarray,
) -> CandidateEval:
    """The rule both paths share: [C*K] closing segments ([lo, hi] along y from the contact),
    collisions, terms and free lengths -> outcome (the first failing check of: too wide,
    collision, antipodality), origin offset, opening and terms."""
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
        return safe_ratio(total, wsum)

    seg = np.repeat(np.arange(m_first.size), np.diff(np.r_[m_first, m_c.size]))
    antip = np.minimum(mean_at(m_u >= (u_max - band)[seg]), mean_at(m_u <= (u_min + band)[seg]))
    share = safe_ratio(np.add.reduceat(op * in_region[m_j], m_first), np.add.reduceat(op, m_first))

    # The fingers sit in free space by construction: each is `clearance` from the closing
    # segment and the next stretch along y is more than a finger plus two clearances away.
    # The palm spans the full opening behind them.
    mid = (chunk_lo + chunk_hi) / 2
    hit = palm & (np.abs(ur - mid[cand]) <= g.palm_half_width + eyr)
    collide = np.zeros(n_cand, bool)
    collide[cand[hit]] = True
    free = np.full(n_cand, np.inf)
    return outcomes(g, min_antipodality, chunk_lo, chunk_hi, collide, antip, share, free)


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
