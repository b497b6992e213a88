"""2D feature sources behind one interface (see docs/architecture.md).

``make_source("dinov2" | "clip" | "labels", **options)`` builds a :class:`FeatureSource`.
Importing this package does not import transformers; the model sources load it when built.
"""

from __future__ import annotations

import inspect
from typing import Any

from gsbp_ros.errors import FeatureError
from gsbp_ros.features.base import FeatureSource, image_to_tensor, load_image
from gsbp_ros.features.clip import ClipDense, ClipSource
from gsbp_ros.features.dinov2 import Dinov2Extractor, Dinov2Source
from gsbp_ros.features.encoding import train_identity_codes
from gsbp_ros.features.labels import LabelMapSource, read_label_map

SOURCES: dict[str, type[FeatureSource]] = {
    "dinov2": Dinov2Source,
    "clip": ClipSource,
    "labels": LabelMapSource,
}


def make_source(name: str, **options: Any) -> FeatureSource:
    """Build a feature source by name.

    Args:
        name: "dinov2", "clip" or "labels".
        options: keyword arguments of that source's constructor, e.g.
            ``make_source("dinov2", model="/models/dinov2-small", device="cuda")`` or
            ``make_source("labels", folder="masks/", label_names=["mug", "table"])``.
    """
    cls = SOURCES.get(str(name).strip().lower())
    if cls is None:
        raise FeatureError(f"unknown feature source {name!r}; known: {', '.join(SOURCES)}")
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise FeatureError(
            f"unknown option(s) {', '.join(unknown)} for feature source {name!r}; "
            f"accepted: {', '.join(accepted)}"
        )
    missing = [
        p.name
        for p in params.values()
        if p.name != "self" and p.default is inspect.Parameter.empty and p.name not in options
    ]
    if missing:
        raise FeatureError(f"feature source {name!r} needs option(s) {', '.join(missing)}")
    return cls(**options)


__all__ = [
    "SOURCES",
    "ClipDense",
    "ClipSource",
    "Dinov2Extractor",
    "Dinov2Source",
    "FeatureSource",
    "LabelMapSource",
    "image_to_tensor",
    "load_image",
    "make_source",
    "read_label_map",
    "train_identity_codes",
]
