"""Benchmark scenes: the demo tabletop densified to a given number of Gaussians.

Surface Gaussians on a table and five objects, opaque and thin like a trained capture's, so
that transmittance saturates as it does in real scenes (about 16 weights per pixel at 1M
Gaussians and 640x480; a cloud of random Gaussians gives 50+ and flatters nobody).
"""

from __future__ import annotations

import functools

from gsbp_ros.camera import Camera
from gsbp_ros.scene import GaussianScene

DEMO_GAUSSIANS = 20154  # the demo scene at density 1


@functools.cache
def _demo(gaussians: int):
    from gsbp_ros.demo_scene import make_demo_scene

    return make_demo_scene(density=gaussians / DEMO_GAUSSIANS)


def bench_scene(gaussians: int) -> GaussianScene:
    """The tabletop with about ``gaussians`` Gaussians (within ~1%)."""
    return _demo(gaussians).scene


def bench_cameras(width: int, height: int, views: int) -> list[Camera]:
    """``views`` orbit views of the tabletop (the demo's framing, 60 degree field of view;
    the same at every density: the objects do not move)."""
    return _demo(DEMO_GAUSSIANS).cameras(num_views=views, width=width, height=height)
