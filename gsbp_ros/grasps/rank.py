"""Scores, near-duplicate suppression and the best grasps."""

from __future__ import annotations

import math

import numpy as np

from gsbp_ros.grasps.contacts import Contacts
from gsbp_ros.grasps.evaluate import CandidateEval
from gsbp_ros.grasps.options import COLLISION, FEASIBLE, NOT_ANTIPODAL, TOO_WIDE, GraspOptions
from gsbp_ros.grasps.solids import CollisionModel
from gsbp_ros.gripper import ParallelJawGripper
from gsbp_ros.results import GRASP_TERMS, GraspSet


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
