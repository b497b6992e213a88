"""Tests for gsbp_ros.raster on the CPU: projection, SH, the torch and numba engines.

Oracles: gsplat's own PyTorch projection/SH code (runs on CPU), a brute-force per-pixel
compositor (``raster/reference.py``, started from each engine's own projection) and
``torch.nn.functional.interpolate`` for the bilinear resizing. The CUDA engines are tested
in test_cuda_engines.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.raster import (
    EngineUnavailableError,
    RasterOptions,
    RasterOptionsError,
    SparseViewWeights,
    compute_view_weights,
    eval_sh,
    project_gaussians,
    render_rgb,
    sh_colors,
)
from gsbp_ros.raster.bilinear import bilinear_matrix
from gsbp_ros.raster.gsplat_engine import pixel_major_weights, row_bands
from gsbp_ros.raster.numba_engine import project_gaussians_numba
from gsbp_ros.raster.projection import MAX_ALPHA
from gsbp_ros.raster.reference import reference_weights
from gsbp_ros.raster.render import gaussian_colors
from gsbp_ros.raster.torch_engine import compute_sparse_weights
from gsbp_ros.scene import GaussianScene

gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl")

CPU_ENGINES = ("torch", "numba")
PROJECTION_OF = {"torch": project_gaussians, "numba": project_gaussians_numba}


# -- scenes and cameras ---------------------------------------------------------------------
def rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = torch.tensor([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return rz @ ry @ rx


def make_camera(width: int, height: int, *, seed: int = 0) -> Camera:
    """Non-square pixels, off-centre principal point, rotated and translated pose."""
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(3, generator=g) - 0.5) * 0.6
    R = rotation(*angles.tolist())
    t = (torch.rand(3, generator=g) - 0.5) * 0.4
    w2c = torch.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = t
    K = torch.tensor(
        [[0.9 * width, 0.0, 0.43 * width], [0.0, 0.8 * width, 0.58 * height], [0.0, 0.0, 1.0]]
    )
    return Camera(f"cam{seed}.png", K, w2c, width, height)


def scene_in_camera(camera: Camera, means_cam: torch.Tensor, **fields) -> GaussianScene:
    """A scene whose means are given in ``camera``'s frame."""
    c2w = camera.cam_to_world
    means = means_cam @ c2w[:3, :3].T + c2w[:3, 3]
    return GaussianScene(means=means, **fields)


def random_scene(camera: Camera, n: int, *, seed: int, sh_degree: int = 1) -> GaussianScene:
    """Overlapping Gaussians in front of the camera, a few behind it, a few off screen."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.6, 0.5, 0.5])
    means[:, 2] += 2.5
    means[:4, 2] = -means[:4, 2]  # behind the camera
    means[4:6, 0] += 6.0  # far off screen to the right
    # about 2 pixels across at the typical depth, whatever the resolution
    log_scales = torch.randn(n, 3, generator=g) * 0.4 + math.log(2.0 * 2.5 / float(camera.K[0, 0]))
    log_scales[6:12, 0] += 1.5  # elongated
    logits = torch.randn(n, generator=g) * 1.5 + 1.5
    # opacity 0.999994, centred on pixel centres: alpha there is clamped to 0.999
    logits[12:18] = 12.0
    fx, fy, cx, cy = (float(camera.K[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    u = torch.randint(2, camera.width - 2, (6,), generator=g) + 0.5
    v = torch.randint(2, camera.height - 2, (6,), generator=g) + 0.5
    means[12:18, 0] = (u - cx) * means[12:18, 2] / fx
    means[12:18, 1] = (v - cy) * means[12:18, 2] / fy
    return scene_in_camera(
        camera,
        means,
        quats=torch.randn(n, 4, generator=g),
        log_scales=log_scales,
        logit_opacities=logits,
        sh=torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.4,
    )


def axis_stack(
    depths: list[float], *, scale: float, logit: float, width: int = 24, height: int = 18
) -> tuple[GaussianScene, Camera]:
    """Isotropic Gaussians on the optical axis; the axis hits the centre of pixel (12, 8)."""
    K = torch.tensor([[20.0, 0.0, 12.5], [0.0, 20.0, 8.5], [0.0, 0.0, 1.0]])
    camera = Camera("axis.png", K, torch.eye(4), width, height)
    n = len(depths)
    means = torch.zeros(n, 3)
    means[:, 2] = torch.tensor(depths)
    scene = GaussianScene(
        means=means,
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        log_scales=torch.full((n, 3), math.log(scale)),
        logit_opacities=torch.full((n,), logit),
        sh=torch.zeros(n, 1, 3),
    )
    return scene, camera


CASES = {
    # name: (width, height, n, seed, rasterize_mode)
    "40x32-classic": (40, 32, 160, 1, "classic"),
    "24x18-antialiased": (24, 18, 60, 2, "antialiased"),
    "33x27-classic": (33, 27, 200, 3, "classic"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """(scene, camera, options, dense references [H*W, N] per engine's projection)."""
    width, height, n, seed, mode = CASES[request.param]
    camera = make_camera(width, height, seed=seed)
    scene = random_scene(camera, n, seed=seed)
    options = RasterOptions(rasterize_mode=mode)
    refs = {
        engine: reference_weights(scene, camera, options=options, project=project)
        for engine, project in PROJECTION_OF.items()
    }
    return scene, camera, options, refs


@pytest.fixture(scope="module", params=CPU_ENGINES)
def engine_case(request, case):
    """(engine name, scene, camera, options, that engine's weights, its dense reference)."""
    scene, camera, options, refs = case
    weights = compute_view_weights(scene, camera, engine=request.param, options=options)
    return request.param, scene, camera, options, weights, refs[request.param]


# -- options ------------------------------------------------------------------------------------
def test_raster_options_validate_and_key():
    assert RasterOptions().as_dict() == {
        "near_plane": 0.01,
        "far_plane": 1e10,
        "eps2d": 0.3,
        "rasterize_mode": "classic",
    }
    for bad, match in [
        ({"rasterize_mode": "fancy"}, "rasterize_mode"),
        ({"eps2d": -0.1}, "eps2d"),
        ({"near_plane": float("nan")}, "near_plane"),
        ({"near_plane": 2.0, "far_plane": 1.0}, "far_plane"),
        ({"eps2d": "0.3"}, "eps2d"),
    ]:
        with pytest.raises(RasterOptionsError, match=match):
            RasterOptions(**bad)
    a, b = RasterOptions().cache_key(), RasterOptions(eps2d=0.1).cache_key()
    assert a != b and set(a) == set(b)


# -- projection and SH --------------------------------------------------------------------------
@pytest.mark.parametrize("engine", CPU_ENGINES)
@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_projection_matches_gsplat_torch_impl(mode, engine):
    camera = make_camera(37, 23, seed=5)
    scene = random_scene(camera, 300, seed=5)
    proj = PROJECTION_OF[engine](scene, camera, options=RasterOptions(rasterize_mode=mode))
    covars, _ = gsplat_torch._quat_scale_to_covar_preci(
        scene.quats, scene.scales(), compute_preci=False
    )
    radii, means2d, depths, conics, comp = gsplat_torch._fully_fused_projection(
        scene.means,
        covars,
        camera.world_to_cam[None],
        camera.K[None],
        camera.width,
        camera.height,
        eps2d=0.3,
        calc_compensations=(mode == "antialiased"),
    )
    theirs = (radii[0] > 0).all(dim=-1)
    # gsplat's PyTorch twin keeps a 3.33-sigma box; the CUDA kernel (and we) use the tighter
    # opacity-aware box, so our valid set is a subset of theirs.
    assert bool((proj.valid <= theirs).all())
    assert int(proj.valid.sum()) > 200
    assert not proj.valid[:4].any()  # behind the camera
    v = theirs
    torch.testing.assert_close(proj.means2d[v], means2d[0][v], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(proj.conics[v], conics[0][v], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(proj.depths, depths[0], rtol=1e-6, atol=1e-6)
    opac = scene.opacities()
    if mode == "antialiased":
        opac = opac * comp[0]
    torch.testing.assert_close(proj.opacities[v], opac[v], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_numba_projection_equals_torch_projection(mode):
    camera = make_camera(64, 48, seed=9)
    scene = random_scene(camera, 2000, seed=9, sh_degree=0)
    options = RasterOptions(rasterize_mode=mode, eps2d=0.2, near_plane=0.5, far_plane=3.0)
    a = project_gaussians(scene, camera, options=options)
    b = project_gaussians_numba(scene, camera, options=options)
    assert torch.equal(a.valid, b.valid) and 100 < int(a.valid.sum()) < 2000
    assert torch.equal(a.radii, b.radii)
    v = a.valid
    # float32 rounding of another evaluation order: ~1e-4 px near the image origin, ~1e-3
    # relative on conics of very thin Gaussians (det = cxx cyy - cxy^2 cancels)
    tolerances = {
        "means2d": (1e-5, 1e-4),
        "conics": (1e-3, 1e-6),
        "covars2d": (1e-4, 1e-5),
        "depths": (1e-6, 1e-6),
        "opacities": (1e-5, 1e-7),
    }
    for name, (rtol, atol) in tolerances.items():
        torch.testing.assert_close(getattr(b, name)[v], getattr(a, name)[v], rtol=rtol, atol=atol)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_projection_culls_near_far_and_reports_extent(engine):
    scene, camera = axis_stack([0.005, 0.5, 50.0], scale=0.05, logit=0.0)
    options = RasterOptions(near_plane=0.01, far_plane=10.0)
    proj = PROJECTION_OF[engine](scene, camera, options=options)
    assert proj.valid.tolist() == [False, True, False]
    # the radius is the opacity-aware box of the CUDA kernel: ceil(sqrt(2 ln(255 o)) sigma)
    sigma_px = math.sqrt((0.05 * 20 / 0.5) ** 2 + 0.3)
    expected = math.ceil(math.sqrt(2 * math.log(255 * 0.5)) * sigma_px)
    assert proj.radii[1].tolist() == [expected, expected]


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_sh_matches_gsplat_torch_impl(degree):
    g = torch.Generator().manual_seed(degree)
    sh = torch.randn(64, (degree + 1) ** 2, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(64, 3, generator=g, dtype=torch.float64) * 3.0
    expected = gsplat_torch._spherical_harmonics(degree, dirs, sh)
    torch.testing.assert_close(eval_sh(sh, dirs), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        sh_colors(sh, dirs), torch.clamp_min(expected + 0.5, 0.0), rtol=0, atol=1e-12
    )
    if degree > 0:  # fewer bands than stored
        torch.testing.assert_close(
            eval_sh(sh, dirs, degree=degree - 1),
            gsplat_torch._spherical_harmonics(degree - 1, dirs, sh),
            rtol=0,
            atol=1e-12,
        )


# -- every CPU engine == brute-force reference ----------------------------------------------------
def _sparse(weights) -> SparseViewWeights:
    return weights if isinstance(weights, SparseViewWeights) else weights.to_sparse()


def test_engine_matches_reference(engine_case):
    _, _, _, _, weights, ref = engine_case
    sparse = _sparse(weights)
    dense = sparse.to_dense()
    assert int((ref > 0).sum()) > 500
    torch.testing.assert_close(dense, ref, rtol=0, atol=1e-5)
    assert torch.equal(dense > 0, ref > 0)
    # pairs are pixel-major, front to back, with no duplicates
    assert bool((sparse.pixel_ids[1:] >= sparse.pixel_ids[:-1]).all())
    key = sparse.pixel_ids * sparse.num_gaussians + sparse.gaussian_ids
    assert key.unique().numel() == sparse.nnz


def test_numba_engine_equals_torch_engine_from_the_same_projection(case):
    """Same projection in, same pairs out: the numba loop and the torch pipeline agree to the
    last ulps of T (float32 product vs float64 log-sum)."""
    from gsbp_ros.raster.numba_engine import NumbaViewWeights
    from gsbp_ros.raster.torch_engine import sparse_weights_from_projection

    scene, camera, options, _ = case
    proj = project_gaussians(scene, camera, options=options)
    a = sparse_weights_from_projection(proj)
    b = NumbaViewWeights(proj).to_sparse()
    assert torch.equal(a.pixel_ids, b.pixel_ids)
    assert torch.equal(a.gaussian_ids, b.gaussian_ids)
    torch.testing.assert_close(b.weights, a.weights, rtol=1e-6, atol=1e-7)


def dense_alphas(scene: GaussianScene, camera: Camera, options: RasterOptions) -> torch.Tensor:
    """[H*W, N] unclamped ``o exp(-sigma)`` of every valid Gaussian at every pixel (0 if
    sigma < 0 or culled): a third, fully vectorised evaluation for checking test coverage."""
    proj = project_gaussians(scene, camera, options=options)
    ys, xs = torch.meshgrid(
        torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij"
    )
    dx = proj.means2d[None, :, 0] - xs.reshape(-1, 1)
    dy = proj.means2d[None, :, 1] - ys.reshape(-1, 1)
    a, b, c = proj.conics.unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = proj.opacities * torch.exp(-sigma)
    return torch.where((sigma >= 0) & proj.valid, alpha, torch.zeros_like(alpha))


def test_random_scenes_exercise_stop_rule_and_clamp(case):
    scene, camera, options, refs = case
    ref = refs["torch"]
    alphas = dense_alphas(scene, camera, options)
    if options.rasterize_mode == "classic":
        # the 0.999 clamp applies to weights that count (with antialiasing the compensation
        # keeps o * comp below 0.999 unless a Gaussian is ~25 pixels wide)
        assert bool(((alphas > MAX_ALPHA) & (ref > 0)).any())
    # the stop rule: Gaussians that pass the alpha threshold but get no weight
    stopped = (alphas >= 1 / 255) & (ref == 0)
    assert int(stopped.any(dim=1).sum()) >= 3


@pytest.mark.parametrize(
    ("chunk_size", "max_pairs"), [(1, 1 << 21), (3, 1 << 21), (17, 1 << 21), (None, 50)]
)
def test_torch_chunking_does_not_change_the_result(case, chunk_size, max_pairs):
    scene, camera, options, _ = case
    weights = compute_sparse_weights(scene, camera, options=options)
    chunked = compute_sparse_weights(
        scene, camera, options=options, chunk_size=chunk_size, max_pairs=max_pairs
    )
    assert torch.equal(chunked.pixel_ids, weights.pixel_ids)
    assert torch.equal(chunked.gaussian_ids, weights.gaussian_ids)
    torch.testing.assert_close(chunked.weights, weights.weights, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_stop_rule_is_exclusive_and_carried_across_chunks(engine):
    # Two near-opaque Gaussians on the axis: at the centre pixel T after the first is
    # ~0.007 and the second would bring it to ~7e-5 <= 1e-4, so gsplat stops before it.
    scene, camera = axis_stack([2.0, 3.0, 4.0], scale=0.5, logit=math.log(0.995 / 0.005))
    centre = 8 * camera.width + 12
    proj = project_gaussians(scene, camera)
    d = proj.means2d[1] - torch.tensor([12.5, 8.5])
    c = proj.conics[1]
    sigma = 0.5 * (c[0] * d[0] ** 2 + c[2] * d[1] ** 2) + c[1] * d[0] * d[1]
    assert float(proj.opacities[1] * torch.exp(-sigma)) > 0.9  # would contribute
    ref = reference_weights(scene, camera, project=PROJECTION_OF[engine])
    assert ref[centre, 0] > 0.99 and ref[centre, 1] == 0 and ref[centre, 2] == 0
    assert (ref[:, 1] > 0).any()  # the second one is seen further out
    # torch: chunk_size=1 carries the stop between depth chunks; numba: max_pairs=1 makes
    # every pixel row its own band group
    for max_pairs in (None, 1):
        w = compute_view_weights(
            scene, camera, engine=engine, max_pairs=max_pairs, chunk_size=max_pairs
        )
        torch.testing.assert_close(_sparse(w).to_dense(), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_alpha_clamp_and_depth_ties(engine):
    # Opacity 0.999994 at sigma = 0 is clamped to 0.999; the Gaussian behind it would bring
    # T to 1e-6 and is stopped. Two identical Gaussians tie in depth: index order wins.
    logit = 12.0
    scene, camera = axis_stack([2.0, 2.0, 3.0], scale=0.3, logit=logit)
    centre = 8 * camera.width + 12
    ref = reference_weights(scene, camera, project=PROJECTION_OF[engine])
    w = _sparse(compute_view_weights(scene, camera, engine=engine)).to_dense()
    torch.testing.assert_close(w, ref, rtol=0, atol=1e-6)
    assert w[centre, 0] == torch.tensor(MAX_ALPHA, dtype=torch.float32)
    assert w[centre, 1] == 0 and w[centre, 2] == 0
    # off-centre the tie shows: the first gets alpha, the second alpha * (1 - alpha)
    edge = (w[:, 0] > 0.05) & (w[:, 0] < 0.9)
    assert edge.any()
    a = w[edge, 0]
    torch.testing.assert_close(w[edge, 1], a * (1 - a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_empty_view(engine):
    scene, camera = axis_stack([-2.0, -3.0], scale=0.3, logit=2.0)  # all behind the camera
    w = compute_view_weights(scene, camera, engine=engine)
    assert w.nnz == 0
    assert torch.equal(w.render(torch.ones(2, 3)), torch.zeros(camera.height, camera.width, 3))
    assert torch.equal(w.backproject(torch.ones(5, 4, 7)), torch.zeros(2, 7))
    assert torch.equal(w.weight_sum(), torch.zeros(2))
    assert torch.equal(w.alpha(), torch.zeros(camera.height, camera.width))


# -- render / backproject / sums -------------------------------------------------------------
def test_render_matches_dense_reference(engine_case):
    _, scene, _, _, weights, ref = engine_case
    values = torch.randn(scene.num_gaussians, 5, generator=torch.Generator().manual_seed(0))
    out = weights.render(values)
    assert out.shape == (weights.height, weights.width, 5)
    torch.testing.assert_close(out.reshape(-1, 5), ref @ values, rtol=1e-5, atol=1e-5)


def test_torch_engine_renders_float64(case):
    scene, camera, options, refs = case
    weights = compute_sparse_weights(scene, camera, options=options)
    values = torch.randn(scene.num_gaussians, 5, generator=torch.Generator().manual_seed(0))
    out64 = weights.render(values.double())
    assert out64.dtype == torch.float64
    expected = (refs["torch"] @ values).double()
    torch.testing.assert_close(out64.reshape(-1, 5), expected, rtol=1e-5, atol=1e-5)
    feats = torch.randn(camera.height, camera.width, 3, generator=torch.Generator())
    assert weights.backproject(feats.double()).dtype == torch.float64


def _interpolate_oracle(ref: torch.Tensor, feats: torch.Tensor, height: int, width: int):
    # the oracle in float64: a float32 dense product is itself off by ~5e-5 here
    c = feats.shape[2]
    up = F.interpolate(
        feats.double().permute(2, 0, 1)[None],
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0].permute(1, 2, 0)
    return (ref.double().T @ up.reshape(-1, c)).float()


@pytest.mark.parametrize("size", [(9, 13), (8, 10), (1, 1), (5, 61), (32, 40), (48, 70)])
def test_backproject_matches_interpolate_oracle(engine_case, size):
    engine, scene, _, _, weights, ref = engine_case
    in_h, in_w = size
    g = torch.Generator().manual_seed(in_h * 100 + in_w)
    feats = torch.randn(in_h, in_w, 6, generator=g)
    expected = _interpolate_oracle(ref, feats, weights.height, weights.width)
    out = weights.backproject(feats)
    assert out.shape == (scene.num_gaussians, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-5)
    # the cached folded matrix is reused and gives the same answer
    torch.testing.assert_close(weights.backproject(feats), out, rtol=0, atol=0)
    if engine == "torch":
        assert weights.folded_matrix(in_h, in_w) is weights.folded_matrix(in_h, in_w)
        # the fast fold (sparse @ sparse) equals the plain one (spread taps, sum duplicates)
        plain = weights.fold_by_coalescing(in_h, in_w).to_dense()
        torch.testing.assert_close(weights.folded_matrix(in_h, in_w).to_dense(), plain)


def test_backproject_into_accumulates_all_maps_in_place(engine_case):
    _, scene, _, _, weights, ref = engine_case
    g = torch.Generator().manual_seed(3)
    maps = [
        torch.randn(7, 9, 4, generator=g),
        torch.randn(weights.height, weights.width, 2, generator=g),
        torch.randn(7, 9, 3, generator=g).double(),  # same size as the first: one fold
    ]
    sums = [torch.randn(scene.num_gaussians, m.shape[2], generator=g) for m in maps]
    before = [s.clone() for s in sums]
    pointers = [s.data_ptr() for s in sums]
    weights.backproject_into(maps, sums)
    assert [s.data_ptr() for s in sums] == pointers  # in place
    for fmap, out, start in zip(maps, sums, before):
        expected = start + _interpolate_oracle(ref, fmap.float(), weights.height, weights.width)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=3e-5)
    with pytest.raises(ValueError, match="float32"):
        weights.backproject_into([maps[0]], [torch.zeros(scene.num_gaussians, 5)])


def test_weight_sum_and_alpha_consistency(engine_case):
    _, scene, _, _, weights, ref = engine_case
    n = scene.num_gaussians
    torch.testing.assert_close(weights.weight_sum(), ref.sum(0), rtol=1e-5, atol=1e-5)
    alpha = weights.alpha()
    torch.testing.assert_close(alpha.reshape(-1), ref.sum(1), rtol=1e-5, atol=1e-5)
    assert float(alpha.max()) <= 1.0 and float(alpha.min()) >= 0.0
    torch.testing.assert_close(weights.render(torch.ones(n, 1))[..., 0], alpha)
    torch.testing.assert_close(
        weights.backproject(torch.ones(weights.height, weights.width, 1))[:, 0],
        weights.weight_sum(),
    )
    # bilinear resizing of a constant is that constant: any size gives the weight sum
    torch.testing.assert_close(
        weights.backproject(torch.full((7, 5, 1), 2.0))[:, 0],
        2.0 * weights.weight_sum(),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(("h", "w", "in_h", "in_w"), [(18, 24, 4, 5), (7, 9, 30, 11), (5, 5, 5, 5)])
def test_bilinear_matrix_matches_interpolate(h, w, in_h, in_w):
    feats = torch.randn(in_h, in_w, 3, generator=torch.Generator().manual_seed(h))
    up = F.interpolate(
        feats.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0)
    mat = bilinear_matrix(h, w, in_h, in_w, device="cpu")
    torch.testing.assert_close((mat @ feats.reshape(-1, 3)).reshape(h, w, 3), up)


def test_pixel_major_weights_recompute_the_torch_engine(case):
    """The CUDA engine's post-processing (alpha * T from gsplat's pair list), checked on the
    CPU against the torch engine's pairs, which come in the same pixel-major order."""
    scene, camera, options, _ = case
    proj = project_gaussians(scene, camera, options=options)
    w = compute_sparse_weights(scene, camera, options=options)
    again = pixel_major_weights(
        w.gaussian_ids,
        w.pixel_ids,
        means2d=proj.means2d,
        conics=proj.conics,
        opacities=proj.opacities,
        width=camera.width,
    )
    torch.testing.assert_close(again, w.weights, rtol=1e-6, atol=1e-8)


def test_row_bands_cover_the_view_within_both_bounds():
    """The CUDA engine's band plan: consecutive, whole tile rows where a band spans one, no
    band over the pixel or the pair bound unless a single row alone is over it."""
    rows = [3, 0, 7, 100, 1, 1, 1, 1, 50, 2, 2, 9, 0, 0, 4, 4, 4, 4, 4, 60, 1]
    for rows_per_band, max_pairs in [(21, 10**9), (9, 10**9), (3, 10**9), (8, 12), (21, 1)]:
        bands = row_bands(rows, rows_per_band=rows_per_band, tile_size=4, max_pairs=max_pairs)
        assert bands[0][0] == 0 and bands[-1][1] == len(rows)
        assert [lo for lo, _ in bands[1:]] == [hi for _, hi in bands[:-1]]
        for lo, hi in bands:
            assert hi - lo <= rows_per_band
            assert hi - lo == 1 or sum(rows[lo:hi]) <= max_pairs
            if rows_per_band >= 4 and hi < len(rows) and sum(rows[lo : hi + 4]) <= max_pairs:
                assert (hi - lo) % 4 == 0  # a pixel-bound band ends on a tile row
    assert row_bands(rows, rows_per_band=21, tile_size=4, max_pairs=10**9) == [(0, 20), (20, 21)]
    assert row_bands(rows, rows_per_band=3, tile_size=4, max_pairs=10**9)[:2] == [(0, 3), (3, 6)]
    assert row_bands(rows, rows_per_band=21, tile_size=4, max_pairs=20)[:3] == [
        (0, 3),
        (3, 4),
        (4, 8),
    ]


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_input_checks(engine):
    scene, camera = axis_stack([2.0], scale=0.3, logit=2.0)
    w = compute_view_weights(scene, camera, engine=engine)
    with pytest.raises(FeatureError):
        w.backproject(torch.ones(4, 4))
    with pytest.raises(FeatureError):
        w.backproject(torch.ones(4, 4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="values"):
        w.render(torch.ones(3, 2))
    with pytest.raises(EngineUnavailableError, match=r"auto.*torch.*numba.*gsplat"):
        compute_view_weights(scene, camera, engine="cuda")
    with pytest.raises(ValueError, match="max_pairs"):
        compute_view_weights(scene, camera, engine=engine, max_pairs=0)


def test_engine_selection_on_cpu():
    from gsbp_ros.raster import resolve_engine

    scene, camera = axis_stack([2.0], scale=0.3, logit=2.0)
    assert resolve_engine("auto", scene) == "numba"
    assert isinstance(compute_view_weights(scene, camera, engine="torch"), SparseViewWeights)
    with pytest.raises(EngineUnavailableError, match="CUDA"):
        compute_view_weights(scene, camera, engine="gsplat")


# -- RGB ---------------------------------------------------------------------------------------
def test_render_rgb_colours_and_background(engine_case):
    engine, scene, camera, options, weights, ref = engine_case
    center = camera.center
    colors = torch.clamp_min(
        gsplat_torch._spherical_harmonics(scene.sh_degree, scene.means - center, scene.sh) + 0.5,
        0.0,
    )
    torch.testing.assert_close(gaussian_colors(scene, camera), colors, rtol=1e-5, atol=1e-6)
    bg = torch.tensor([0.2, 0.5, 1.0])
    image = render_rgb(scene, camera, weights=weights, background=bg)
    expected = (ref @ colors + bg * (1 - ref.sum(1, keepdim=True))).clamp(0, 1)
    torch.testing.assert_close(image.reshape(-1, 3), expected, rtol=1e-5, atol=1e-5)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    # computing the weights itself gives the same image
    again = render_rgb(scene, camera, background=bg, options=options, engine=engine)
    torch.testing.assert_close(again, image)
