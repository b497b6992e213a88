"""The paper's method (autograd through a differentiable rasterizer), kept as the bench
baseline: on the CPU it must give exactly what the engines give."""

from __future__ import annotations

import pytest
import torch

from gsbp_ros.demo_scene import make_demo_scene
from gsbp_ros.raster import RasterOptions, compute_view_weights
from gsbp_ros.raster.paper_baseline import torch_autograd_backproject, upsample


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_cpu_autograd_baseline_equals_the_engines(mode):
    demo = make_demo_scene()
    camera = demo.cameras(num_views=4, width=70, height=45)[2]  # edge tiles are partial
    options = RasterOptions(rasterize_mode=mode)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(9, 12, 40, generator=g)  # two chunks of 32 channels, one partial
    ours = compute_view_weights(demo.scene, camera, engine="numba", options=options)
    expected = ours.backproject(feats)
    got = torch_autograd_backproject(
        demo.scene, camera, feats, options=options, channel_chunk=32, max_elements=1 << 16
    )
    assert float(expected.abs().max()) > 1.0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=2e-5)


def test_upsample_is_identity_at_the_view_size():
    f = torch.randn(5, 7, 3)
    assert upsample(f, 5, 7) is f
    assert upsample(f, 10, 14).shape == (10, 14, 3)
