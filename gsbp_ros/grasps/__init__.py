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

Modules: options (options, outcomes, errors), solids (the scene's opaque Gaussians with a
k-d tree), contacts (steps 1-2), evaluate (steps 3-4 and the terms, vectorised over
(candidate, Gaussian) pairs), reference (the same by brute force; tests hold them equal),
rank (step 5). :func:`plan_grasps` runs them.
"""

from __future__ import annotations

import numpy as np

from gsbp_ros.grasps.contacts import Contacts, sample_contacts
from gsbp_ros.grasps.evaluate import CandidateEval, evaluate_candidates
from gsbp_ros.grasps.options import (
    COLLISION,
    FEASIBLE,
    MIN_REGION_GAUSSIANS,
    NOT_ANTIPODAL,
    TOO_WIDE,
    GraspError,
    GraspOptions,
)
from gsbp_ros.grasps.rank import rank_grasps
from gsbp_ros.grasps.reference import evaluate_candidates_reference
from gsbp_ros.grasps.solids import CollisionModel
from gsbp_ros.gripper import GripperError, ParallelJawGripper
from gsbp_ros.results import GraspSet


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
    "MIN_REGION_GAUSSIANS",
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
