"""Region summaries on known geometry, outlier removal (numpy == open3d), output paths, export."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gsbp_ros.errors import QueryError
from gsbp_ros.export import (
    check_output_path,
    export_selection,
    statistical_outlier_mask,
    statistical_outlier_mask_reference,
)
from gsbp_ros.regions import (
    approach_direction,
    gaussian_normals,
    pca_box,
    quat_to_rotmat,
    summarize_region,
)
from gsbp_ros.scene import GaussianScene

R_BOX = Rotation.from_euler("zyx", [35.0, -20.0, 60.0], degrees=True).as_matrix()


def box_surface(sides, n: int = 9) -> np.ndarray:
    """Regular grid points on the surface of an axis-aligned box centred at 0 (corners included).

    The set is mirror-symmetric in each axis, so its covariance is exactly diagonal.
    """
    axes = [np.linspace(-s / 2, s / 2, n) for s in sides]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    half = np.asarray(sides) / 2
    on_face = (np.isclose(np.abs(grid), half)).any(axis=1)
    return grid[on_face]


# -- quaternions and normals ---------------------------------------------------------------------
def test_quat_to_rotmat_matches_scipy() -> None:
    q = np.random.default_rng(0).normal(size=(50, 4)) * 3.0  # unnormalised, any sign
    want = Rotation.from_quat(q, scalar_first=True).as_matrix()
    np.testing.assert_allclose(quat_to_rotmat(q), want, atol=1e-12)
    np.testing.assert_allclose(quat_to_rotmat(np.array([1.0, 0, 0, 0])), np.eye(3)[None])
    with pytest.raises(QueryError, match="zero-length"):
        quat_to_rotmat(np.zeros((1, 4)))


def test_gaussian_normals_are_the_shortest_axis() -> None:
    rot = Rotation.random(20, random_state=1)
    scales = np.random.default_rng(1).uniform(0.01, 1.0, size=(20, 3))
    got = gaussian_normals(scales, rot.as_quat(scalar_first=True))
    mats = rot.as_matrix()
    want = mats[np.arange(20), :, np.argmin(scales, axis=1)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(
        gaussian_normals(np.log(scales), rot.as_quat(scalar_first=True)), want, atol=1e-12
    )  # log-scales: same order, same axes


# -- boxes ---------------------------------------------------------------------------------------
def test_obb_recovers_a_rotated_box_and_aabb_is_exact() -> None:
    sides = np.array([4.0, 2.0, 1.0])
    t = np.array([0.3, -1.2, 2.5])
    pts = box_surface(sides) @ R_BOX.T + t
    s = summarize_region(pts)
    # Axes = the box's axes (columns of R) up to sign, largest side first, right-handed.
    np.testing.assert_allclose(np.abs(s.obb_axes @ R_BOX), np.eye(3), atol=1e-9)
    np.testing.assert_allclose(s.obb_axes @ s.obb_axes.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(s.obb_axes), 1.0)
    np.testing.assert_allclose(s.obb_extent, sides, atol=1e-9)
    np.testing.assert_allclose(s.obb_center, t, atol=1e-9)
    np.testing.assert_allclose(s.centroid, t, atol=1e-12)
    half = np.abs(R_BOX) @ (sides / 2)  # AABB of a rotated box: its rotated corners
    np.testing.assert_allclose(s.aabb_min, t - half, atol=1e-12)
    np.testing.assert_allclose(s.aabb_max, t + half, atol=1e-12)
    pa = s.principal_axis
    np.testing.assert_allclose(np.abs(pa), np.abs(R_BOX[:, 0]), atol=1e-9)
    assert pa[np.argmax(np.abs(pa))] > 0  # canonical sign
    assert s.approach is None  # no normals
    # The box covers every point in its own frame.
    local = (pts - s.obb_center) @ s.obb_axes.T
    assert (np.abs(local) <= s.obb_extent / 2 + 1e-9).all()


@pytest.mark.parametrize(
    ("points", "extent"),
    [
        (np.array([[1.0, 2.0, 3.0]]), [0, 0, 0]),
        (np.array([[0.0, 0, 0], [3.0, 4.0, 0]]), [5, 0, 0]),
        (np.outer(np.linspace(0, 1, 7), [1.0, 2.0, 2.0]), [3, 0, 0]),  # collinear
        (np.array([[0.0, 0, 1], [2, 0, 1], [0, 1, 1], [2, 1, 1], [1, 0.5, 1]]), [2, 1, 0]),
        (np.tile([[5.0, 5.0, 5.0]], (4, 1)), [0, 0, 0]),  # repeated point
    ],
)
def test_degenerate_regions_are_finite(points: np.ndarray, extent) -> None:
    s = summarize_region(points, normals=np.tile([0.0, 0.0, 1.0], (len(points), 1)))
    for v in (s.centroid, s.aabb_min, s.aabb_max, s.obb_center, s.obb_axes, s.obb_extent):
        assert np.isfinite(v).all()
    np.testing.assert_allclose(s.obb_extent, extent, atol=1e-9)
    np.testing.assert_allclose(s.obb_axes @ s.obb_axes.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(s.obb_axes), 1.0)
    local = (points - s.obb_center) @ s.obb_axes.T
    assert (np.abs(local) <= s.obb_extent / 2 + 1e-9).all()
    assert s.approach is None or np.isfinite(s.approach).all()


def test_pca_box_rejects_bad_input() -> None:
    with pytest.raises(QueryError, match="non-finite"):
        pca_box(np.array([[0.0, np.nan, 0]]))
    with pytest.raises(QueryError, match="empty"):
        summarize_region(np.zeros((0, 3)))
    with pytest.raises(QueryError, match="shape"):
        summarize_region(np.zeros((4, 2)))


# -- approach direction ---------------------------------------------------------------------------
def flat_gaussians_on_plane(rng: np.random.Generator, m: int = 60):
    """Flat Gaussians on a tilted plane, normals along ±n in random axis slots and signs."""
    frame = Rotation.from_euler("xyz", [25.0, -40.0, 10.0], degrees=True).as_matrix()
    a, b, n = frame.T
    centre = np.array([0.5, 0.2, -0.3])
    uv = rng.uniform(-0.2, 0.2, size=(m, 2))
    means = centre + uv[:, :1] * a + uv[:, 1:] * b
    mats, scales = [], []
    for _ in range(m):
        s, th = rng.choice([-1.0, 1.0]), rng.uniform(0, 2 * np.pi)
        a2 = np.cos(th) * a + np.sin(th) * b
        b2 = s * (-np.sin(th) * a + np.cos(th) * b)
        cols = [a2, b2, s * n]  # right-handed: a2 x b2 = s n
        j = int(rng.integers(0, 3))
        r = (j + 1) % 3
        cols = cols[3 - r :] + cols[: 3 - r]  # cyclic shift (det stays +1): normal at column j
        mats.append(np.stack(cols, axis=1))
        sc = np.array([0.05, 0.03, 0.04])
        sc[j] = 1e-3
        scales.append(sc)
    quats = Rotation.from_matrix(np.stack(mats)).as_quat(scalar_first=True)
    quats *= rng.choice([-2.0, 0.5], size=(m, 1))  # same rotations, unnormalised
    return means, np.stack(scales), quats, n, centre


def test_approach_is_minus_the_plane_normal_toward_the_cameras() -> None:
    rng = np.random.default_rng(2)
    means, scales, quats, n, centre = flat_gaussians_on_plane(rng)
    np.testing.assert_allclose(np.abs(gaussian_normals(scales, quats) @ n), 1.0, atol=1e-9)
    cams = centre + 2.0 * n + rng.normal(scale=0.5, size=(5, 3))
    s = summarize_region(means, scales=scales, quats=quats, camera_centers=cams)
    np.testing.assert_allclose(s.approach, -n, atol=1e-9)
    s = summarize_region(means, scales=scales, quats=quats, camera_centers=centre - 2.0 * n)
    np.testing.assert_allclose(s.approach, n, atol=1e-9)  # seen from the other side
    # No cameras: oriented away from the rest of the scene.
    s = summarize_region(means, scales=scales, quats=quats, scene_center=centre - 1.0 * n)
    np.testing.assert_allclose(s.approach, -n, atol=1e-9)
    s = summarize_region(means, scales=scales, quats=quats, camera_centers=cams, approach=False)
    assert s.approach is None
    # The plane is the region's smallest PCA axis.
    np.testing.assert_allclose(np.abs(s.obb_axes[2] @ n), 1.0, atol=1e-9)


def test_approach_of_a_closed_blob_and_degenerate_cases() -> None:
    rng = np.random.default_rng(3)
    # Upper half of a sphere (azimuth-symmetric grid), radial normals with random signs,
    # a camera above: the oriented normals' sideways parts cancel, approach = -z.
    phi, el = np.meshgrid(np.arange(24) * np.pi / 12, np.radians([10.0, 30, 50, 70, 90]))
    d = np.stack([np.cos(el) * np.cos(phi), np.cos(el) * np.sin(phi), np.sin(el)], -1)
    d = d.reshape(-1, 3)
    signs = rng.choice([-1.0, 1.0], size=(len(d), 1))
    got = approach_direction(d, d * signs, camera_centers=np.array([[0.0, 0.0, 10.0]]))
    np.testing.assert_allclose(got, [0, 0, -1], atol=1e-12)
    # Normals perpendicular to the only reference and opposite: they cancel -> None.
    means = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    normals = np.array([[0.0, 1, 0], [0.0, -1, 0]])
    assert approach_direction(means, normals, camera_centers=np.array([[0.5, 0, 5]])) is None
    # A single Gaussian with no reference at all: no orientation -> None.
    assert approach_direction(means[:1], normals[:1]) is None


# -- statistical outliers ------------------------------------------------------------------------
def outlier_sets():
    rng = np.random.default_rng(4)
    blob = rng.normal(scale=0.05, size=(500, 3))
    far = rng.uniform(-3, 3, size=(15, 3))
    dup = np.repeat(rng.normal(size=(30, 3)), 3, axis=0)  # zero mean distance for k <= 3
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return [
        (np.concatenate([blob, far]), 20, 2.0),
        (np.concatenate([blob, far]), 5, 0.5),
        (np.concatenate([dup, far]), 3, 1.0),
        (np.concatenate([dup, far]), 8, 1.0),
        (rng.normal(size=(12, 3)), 50, 1.0),  # k > M
        (rng.normal(size=(2, 3)), 20, 2.0),
        (grid, 6, 1.0),
    ]


@pytest.mark.parametrize("case", range(7))
def test_outlier_mask_numpy_equals_open3d(case: int) -> None:
    points, k, ratio = outlier_sets()[case]
    got = statistical_outlier_mask(points, k, ratio)
    want = statistical_outlier_mask_reference(points, k, ratio)
    assert got.dtype == bool and got.shape == (len(points),)
    assert np.array_equal(got, want)
    if case == 0:
        assert not got[500:].any() and got[:500].mean() > 0.95  # the far points go


def test_outlier_mask_small_and_bad_input() -> None:
    one = np.zeros((1, 3))
    assert statistical_outlier_mask(one).tolist() == [True]
    assert statistical_outlier_mask_reference(one).tolist() == [True]
    with pytest.raises(QueryError, match="nb_neighbors"):
        statistical_outlier_mask(np.zeros((5, 3)), 0, 2.0)
    with pytest.raises(QueryError, match="std_ratio"):
        statistical_outlier_mask_reference(np.zeros((5, 3)), 5, -1.0)


# -- output paths ----------------------------------------------------------------------------------
def test_check_output_path(tmp_path) -> None:
    allowed = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    got = check_output_path("sub/dir/mug.ply", allowed)
    assert got == (allowed / "sub" / "dir" / "mug.ply").resolve() and got.parent.is_dir()
    assert check_output_path(allowed / "a" / ".." / "b.PLY", allowed) == allowed.resolve() / "b.PLY"
    for bad in ["../x.ply", str(outside / "x.ply"), "sub/../../x.ply", str(allowed)]:
        with pytest.raises(QueryError, match="outside"):
            check_output_path(bad, allowed)
    os.symlink(outside, allowed / "link")  # a folder link that leaves the output folder
    with pytest.raises(QueryError, match="outside"):
        check_output_path("link/x.ply", allowed)
    os.symlink(outside / "target.ply", allowed / "file.ply")  # a dangling file link, too
    with pytest.raises(QueryError, match="outside"):
        check_output_path("file.ply", allowed)
    assert not (outside / "x.ply").exists() and not (outside / "target.ply").exists()
    for bad, msg in [("mug.txt", "must end in .ply"), ("mug", "must end in .ply"), ("", "empty")]:
        with pytest.raises(QueryError, match=msg):
            check_output_path(bad, allowed)
    (allowed / "d.ply").mkdir()
    with pytest.raises(QueryError, match="folder"):
        check_output_path("d.ply", allowed)
    # Bad requests, not internal errors: a symlink loop and a name longer than the OS allows.
    os.symlink("loop", allowed / "loop")
    for bad in ["loop/x.ply", "x" * 300 + ".ply"]:
        with pytest.raises(QueryError, match="output path"):
            check_output_path(bad, allowed)


# -- export ------------------------------------------------------------------------------------
def make_scene(n: int = 60, seed: int = 5) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g) * 0.05,
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 4.0,
        logit_opacities=torch.randn(n, generator=g),
        sh=torch.randn(n, 4, 3, generator=g),
    )


@pytest.fixture
def saved(monkeypatch) -> list:
    """Records (scene, path) instead of writing, so export logic is tested on its own."""
    calls: list = []
    monkeypatch.setattr(GaussianScene, "save", lambda self, path: calls.append((self, path)))
    return calls


def test_export_selection_extract_delete_cleanup(tmp_path, saved) -> None:
    scene = make_scene()
    scene.means[7] = torch.tensor([5.0, 5.0, 5.0])  # a stray Gaussian in the selection
    sel = np.array([9, 3, 7, 3, *range(20, 40)])  # unsorted, with a duplicate
    path, count = export_selection(scene, sel, tmp_path / "x.ply")
    chosen = sorted(set(sel.tolist()))
    assert count == len(chosen) and path == tmp_path / "x.ply"
    assert torch.equal(saved[-1][0].means, scene.means[chosen])
    _, count = export_selection(scene, torch.from_numpy(sel), tmp_path / "x.ply", complement=True)
    assert count == 60 - len(chosen)
    assert torch.equal(saved[-1][0].means, scene.means[[i for i in range(60) if i not in chosen]])
    _, count = export_selection(scene, sel, tmp_path / "x.ply", cleanup=True, nb_neighbors=5)
    assert 7 not in [int(i) for i in (saved[-1][0].means == scene.means[7]).all(1).nonzero()]
    assert count == len(chosen) - 1
    _, count = export_selection(
        scene, sel, tmp_path / "x.ply", complement=True, cleanup=True, nb_neighbors=5
    )
    assert count == 60 - len(chosen) + 1  # the stray one stays in the scene
    mask = np.zeros(60, dtype=bool)
    mask[[1, 2]] = True
    assert export_selection(scene, mask, tmp_path / "m.ply")[1] == 2


def test_export_selection_errors(tmp_path, saved) -> None:
    scene = make_scene(10)
    with pytest.raises(QueryError, match="selection is empty"):
        export_selection(scene, np.array([], dtype=np.int64), tmp_path / "x.ply")
    with pytest.raises(QueryError, match="every Gaussian"):
        export_selection(scene, np.arange(10), tmp_path / "x.ply", complement=True)
    with pytest.raises(QueryError, match=r"\[0, 10\)"):
        export_selection(scene, np.array([3, 10]), tmp_path / "x.ply")
    with pytest.raises(QueryError, match=r"\.ply"):
        export_selection(scene, np.array([3]), tmp_path / "x.pt")
    with pytest.raises(QueryError, match="outside"):
        export_selection(scene, np.array([3]), "../x.ply", allowed_dir=tmp_path / "out")
    with pytest.raises(QueryError, match="integers"):
        export_selection(scene, np.array([1.5]), tmp_path / "x.ply")
    assert saved == []


def test_export_selection_reports_write_failures(tmp_path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(QueryError, match="cannot write"):
        export_selection(make_scene(10), np.array([3]), tmp_path / "a_file" / "x.ply")


def test_export_selection_writes_a_loadable_ply(tmp_path) -> None:
    scene = make_scene(30)
    path, count = export_selection(
        scene, np.array([2, 5, 11]), "objs/mug.ply", allowed_dir=tmp_path
    )
    assert path == (tmp_path / "objs" / "mug.ply").resolve() and count == 3
    back = GaussianScene.load(path)
    torch.testing.assert_close(back.means, scene.means[[2, 5, 11]])
    torch.testing.assert_close(back.sh, scene.sh[[2, 5, 11]])


def test_view_points_orient_each_normal_over_a_misleading_camera_mean():
    """Each Gaussian's own viewpoint wins over the mean of all cameras."""
    from gsbp_ros.regions import approach_direction

    rng = np.random.default_rng(0)
    means = np.c_[np.zeros(50), rng.uniform(-1, 1, (50, 2))]  # the plane x = 0
    normals = np.tile([1.0, 0.0, 0.0], (50, 1)) * rng.choice([-1.0, 1.0], (50, 1))
    view_points = means + np.array([2.0, 0.3, 0.1])  # seen from the +x side
    misleading = np.array([[-5.0, 0.0, 0.0]])  # the mean camera sits on the -x side
    got = approach_direction(means, normals, camera_centers=misleading, view_points=view_points)
    np.testing.assert_allclose(got, [-1.0, 0.0, 0.0], atol=1e-12)
    without = approach_direction(means, normals, camera_centers=misleading)
    np.testing.assert_allclose(without, [1.0, 0.0, 0.0], atol=1e-12)


# -- robust geometry ----------------------------------------------------------------------------
def test_rotmat_to_quat_matches_scipy() -> None:
    from gsbp_ros.regions import rotmat_to_quat

    rot = Rotation.random(200, random_state=3)
    got = rotmat_to_quat(rot.as_matrix())
    want = rot.as_quat(scalar_first=True)
    want *= np.where(want[:, :1] < 0, -1.0, 1.0)
    np.testing.assert_allclose(got, want, atol=1e-12)
    # the four branches: near-identity and half turns about each axis
    special = np.stack(
        [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    )
    np.testing.assert_allclose(quat_to_rotmat(rotmat_to_quat(special)), special, atol=1e-12)


def test_one_floater_cannot_spoil_the_region() -> None:
    sides = np.array([0.3, 0.2, 0.1])
    pts = box_surface(sides) @ R_BOX.T + np.array([1.0, 2.0, 0.5])
    clean = summarize_region(pts)
    for floater, weight in (([40.0, -3.0, 7.0], 1.0), ([1.0, 2.0, 1.2], 1.0)):
        s = summarize_region(np.vstack([pts, floater]), weights=np.r_[np.ones(len(pts)), weight])
        assert s.num_trimmed == 1
        np.testing.assert_allclose(s.aabb_min, clean.aabb_min, atol=1e-12)
        np.testing.assert_allclose(s.aabb_max, clean.aabb_max, atol=1e-12)
        np.testing.assert_allclose(s.centroid, clean.centroid, atol=1e-12)
        np.testing.assert_allclose(np.abs(s.obb_axes @ clean.obb_axes.T), np.eye(3), atol=1e-9)
    untrimmed = summarize_region(np.vstack([pts, [40.0, -3.0, 7.0]]), trim=False)
    assert untrimmed.num_trimmed == 0 and untrimmed.aabb_max[0] == 40.0
    # A transparent (weight 0) Gaussian close by is left out too, a compact region keeps all.
    s = summarize_region(np.vstack([pts, [1.0, 2.0, 0.7]]), weights=np.r_[np.ones(len(pts)), 0])
    assert s.num_trimmed == 1
    assert clean.num_trimmed == 0


def test_region_weights_and_weighted_axes() -> None:
    from gsbp_ros.regions import region_weights, trim_outliers

    w = region_weights(np.array([1.0, 0.5, 0.2, 1.0]), np.array([4.0, 2.0, 8.0, 0.0]))
    # median of the seen weights (2, 4, 8) is 4: min(1, bp / 4) x opacity
    np.testing.assert_allclose(w, [1.0, 0.25, 0.2, 0.0])
    assert region_weights(None, None) is None
    np.testing.assert_allclose(region_weights(np.array([0.3, 0.9])), [0.3, 0.9])
    # Two perpendicular lines: the weighted one is the principal axis.
    t = np.linspace(-1, 1, 21)
    pts = np.vstack([np.c_[t, 0 * t, 0 * t], np.c_[0 * t, t, 0 * t]])
    weights = np.r_[np.full(21, 10.0), np.full(21, 0.1)]
    np.testing.assert_allclose(np.abs(pca_box(pts, weights)[1][0]), [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(np.abs(pca_box(pts, weights[::-1])[1][0]), [0, 1, 0], atol=1e-9)
    with pytest.raises(QueryError, match="fence"):
        trim_outliers(pts, quantile=0.0)
    with pytest.raises(QueryError, match="non-negative"):
        summarize_region(pts, weights=-weights)


def _sphere(n: int = 400, radius: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = k * np.pi * (3 - np.sqrt(5))
    d = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
    return np.array([0.3, -0.2, 0.1]) + radius * d, d


def test_normals_seen_from_both_sides_get_one_sign() -> None:
    """A thin plate seen from above and below: every mean viewpoint lies near the plate's
    plane, on either side at random. Those are no evidence; the fallback decides, the same
    way for every Gaussian."""
    from gsbp_ros.regions import orient_normals

    rng = np.random.default_rng(0)
    means = np.c_[rng.uniform(-0.1, 0.1, (200, 2)), np.zeros(200)]
    normals = np.tile([0.0, 0.0, 1.0], (200, 1)) * rng.choice([-1.0, 1.0], (200, 1))
    heading = rng.uniform(0, 2 * np.pi, 200)
    sideways = np.c_[np.cos(heading), np.sin(heading), np.zeros(200)] * rng.uniform(
        0.5, 2, (200, 1)
    )
    view_points = means + sideways + rng.uniform(-0.05, 0.05, (200, 1)) * [0, 0, 1.0]
    cams = np.array([[0.0, 0.0, 2.0]])
    oriented, how = orient_normals(means, normals, view_points=view_points, camera_centers=cams)
    assert (how == 3).all()  # the cameras' mean, not the ambiguous per-Gaussian viewpoints
    np.testing.assert_allclose(oriented, np.tile([0.0, 0.0, 1.0], (200, 1)))
    # The previous rule (sign of the dot with the viewpoint) gives both signs here.
    naive = np.sign(np.einsum("ij,ij->i", normals, view_points - means))
    assert len(set((naive * normals[:, 2]).tolist())) == 2


def test_ambiguous_normals_follow_their_confident_neighbours() -> None:
    from gsbp_ros.regions import orient_normals

    rng = np.random.default_rng(1)
    means, out = _sphere()
    normals = out * rng.choice([-1.0, 1.0], (len(out), 1))
    view_points = means + 3.0 * out  # seen from outside
    ambiguous = rng.random(len(out)) < 0.4
    tangent = np.cross(out, rng.normal(size=(len(out), 3)))
    view_points[ambiguous] = means[ambiguous] + tangent[ambiguous]  # on the tangent plane
    oriented, how = orient_normals(means, normals, view_points=view_points)
    np.testing.assert_allclose(oriented, out, atol=1e-12)
    assert (how[~ambiguous] == 0).all() and (how[ambiguous] == 1).all()


def test_fallback_never_points_into_the_object() -> None:
    """No viewpoints, and the cameras' mean far off to one side: the normals on the far side
    must still point outward (toward the cameras' mean would point them into the sphere)."""
    from gsbp_ros.regions import orient_normals

    means, out = _sphere()
    normals = -out
    cams = np.array([[5.0, 0.0, 0.0], [5.0, 1.0, 0.0]])
    oriented, how = orient_normals(means, normals, camera_centers=cams)
    np.testing.assert_allclose(oriented, out, atol=1e-12)
    assert (how == 2).all()
    # A cap of the sphere's far side: outward is away from the cameras, and it stays so.
    cap = out[:, 0] < -0.5
    got = approach_direction(means[cap], normals[cap], camera_centers=cams)
    assert got[0] > 0.9  # approach toward +x: from outside the cap, into it
