"""Kept so that ``from gsbp_ros.evaluate import iou`` goes on working; the evaluation code
lives in :mod:`gsbp_ros.evaluation`."""

from gsbp_ros.evaluation.metrics import iou

__all__ = ["iou"]
