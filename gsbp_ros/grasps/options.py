"""Options, outcomes and errors of the grasp planner."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gsbp_ros.errors import QueryError
from gsbp_ros.results import GRASP_TERMS

#: Outcome of a candidate (:attr:`gsbp_ros.grasps.evaluate.CandidateEval.reason`).
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
