"""Evidence of quality (``gsbp eval``): accuracy against ground truth, robustness to degraded
label maps, feature distillation as a baseline, and the protocol of public benchmarks.

Modules: ``metrics`` (IoU, class-mean IoU), ``labelled`` (scenes with ground truth),
``corruption`` (ways to damage label maps), ``lifting`` (label lifting with reused per-view
weights), ``robustness`` (the sweep), ``distill`` (the distillation solvers), ``comparison``
(side by side), ``benchmark`` (LERF-Mask / 3D-OVS layouts), ``memory`` (time and peak
memory), ``report`` and ``plots`` (docs/quality.md), ``demo`` and ``command`` (the CLI modes).
"""

from gsbp_ros.evaluation.metrics import class_mean_iou, iou

__all__ = ["class_mean_iou", "iou"]
