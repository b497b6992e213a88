"""Parallel-jaw grasps: fast path == brute-force reference, and the demo scene's ground truth.

The ground-truth checks are independent of the planner's own collision model: gripper boxes
are tested against each Gaussian's centre and 26 points of its 1-sigma ellipsoid, built with
scipy's rotations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gsbp_ros import grasps as G
from gsbp_ros.demo_scene import HANDLE, MUG, make_demo_scene
from gsbp_ros.errors import QueryError
from gsbp_ros.grasps import (
    FEASIBLE,
    TOO_WIDE,
    CollisionModel,
    GraspError,
    GraspOptions,
    evaluate_candidates,
    evaluate_candidates_reference,
    plan_grasps,
    sample_contacts,
    solids,
)
from gsbp_ros.gripper import BOX_EDGES, GripperError, ParallelJawGripper, box_corners
from gsbp_ros.results import GRASP_TERMS


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    d = make_demo_scene()
    sc = d.scene
    opacity = torch.sigmoid(sc.logit_opacities).numpy()
    model = CollisionModel.from_gaussians(
        sc.means.numpy(), sc.quats.numpy(), sc.log_scales.numpy(), opacity
    )
    return d, model, opacity


def _parts(d, name: str) -> np.ndarray:
    return np.flatnonzero(d.part_labels.numpy() == d.part_names.index(name))


def _objects(d, name: str) -> np.ndarray:
    return np.flatnonzero(d.object_labels.numpy() == d.object_names.index(name))


def random_scene(seed: int, n: int = 1500):
    """Gaussians of random sizes, shapes and orientations on a few random planes and blobs,
    with some very large ones (beyond the k-d tree's radius cap) and transparent ones."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.07, 0.07, size=(8, 3))
    spread = rng.uniform(0.001, 0.008, size=(8, 3))  # small objects, some thin
    blob = rng.integers(0, 8, n)
    means = centres[blob] + rng.normal(size=(n, 3)) * spread[blob]
    log_scales = np.log(rng.uniform(0.0003, 0.003, size=(n, 3)))
    # A few big ones around the objects (beyond the k-d tree's radius cap).
    big = n // 100
    direction = rng.normal(size=(big, 3))
    means[:big] = 0.09 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    log_scales[:big] = np.log(rng.uniform(0.005, 0.02, size=(big, 3)))
    quats = rng.normal(size=(n, 4))
    opacity = rng.uniform(0.0, 1.0, n)
    return means, quats, log_scales, opacity


def compare(fast: G.CandidateEval, ref: G.CandidateEval) -> None:
    np.testing.assert_array_equal(fast.reason, ref.reason)
    # Too wide: both stop looking where the fast path stops gathering; the rest is exact.
    m = fast.reason != TOO_WIDE
    for name in ("offset", "width", "antipodality", "in_region"):
        np.testing.assert_allclose(getattr(fast, name)[m], getattr(ref, name)[m], atol=1e-12)
    ok = fast.reason == FEASIBLE
    np.testing.assert_allclose(fast.clearance[ok], ref.clearance[ok], atol=1e-9)


def evaluate_both(model, region, gripper, options, view_points=None):
    contacts = sample_contacts(model, region, view_points=view_points, options=options)
    in_region = np.zeros(len(model), bool)
    slots = model.slot[region]
    in_region[slots[slots >= 0]] = True
    kw = {"num_approaches": options.num_approaches, "min_antipodality": options.min_antipodality}
    fast = evaluate_candidates(model, contacts, in_region, gripper, **kw)
    ref = evaluate_candidates_reference(model, contacts, in_region, gripper, **kw)
    return fast, ref


# -- fast path == reference -------------------------------------------------------------------
@pytest.mark.parametrize("part", ["mug_handle", "mug_body", "box", "bottle_cap"])
def test_fast_equals_reference_on_the_demo_scene(demo, part) -> None:
    d, model, _ = demo
    region = _parts(d, part)
    options = GraspOptions(num_contacts=6, num_approaches=8, seed=3)
    fast, ref = evaluate_both(model, region, ParallelJawGripper(), options)
    compare(fast, ref)
    assert (fast.reason == FEASIBLE).any() or part == "box"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dense", [True, False])
def test_fast_equals_reference_on_random_scenes(seed, dense, monkeypatch) -> None:
    means, quats, log_scales, opacity = random_scene(seed)
    model = CollisionModel.from_gaussians(means, quats, log_scales, opacity)
    if not dense:  # the k-d tree answers point by point instead of one dense crop
        monkeypatch.setattr(solids, "DENSE_PAIRS", 0)
    gripper = ParallelJawGripper(
        max_opening=0.05, finger_length=0.03, finger_width=0.015, palm_depth=0.02
    )
    region = np.flatnonzero(np.linalg.norm(means - means[20], axis=1) < 0.02)
    options = GraspOptions(num_contacts=8, num_approaches=7, seed=seed, min_antipodality=0.3)
    fast, ref = evaluate_both(model, region, gripper, options)
    compare(fast, ref)
    counts = np.bincount(fast.reason, minlength=4)
    assert counts.sum() == 56 and (counts > 0).sum() >= 2  # more than one outcome exercised


def test_pairs_cover_every_gaussian_within_reach() -> None:
    means, quats, log_scales, opacity = random_scene(7)
    model = CollisionModel.from_gaussians(means, quats, log_scales, opacity)
    pts = means[:20] + 0.01
    rows, cols = model.near(pts, 0.04)
    want = {
        (i, j)
        for i in range(len(pts))
        for j in range(len(model))
        if np.linalg.norm(model.means[j] - pts[i]) <= 0.04 + model.radius[j]
    }
    assert set(zip(rows.tolist(), cols.tolist())) == want
    assert np.all(np.diff(rows) >= 0)


# -- ground truth on the demo scene -------------------------------------------------------------
def gaussian_probe_points(d, indices: np.ndarray) -> np.ndarray:
    """[M, 27, 3]: each Gaussian's centre and 26 points on its 1-sigma ellipsoid."""
    sc = d.scene
    rot = Rotation.from_quat(sc.quats.numpy()[indices], scalar_first=True).as_matrix()
    scales = np.exp(sc.log_scales.numpy()[indices].astype(np.float64))
    dirs = np.array(
        [[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if i or j or k],
        dtype=np.float64,
    )
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    means = sc.means.numpy()[indices].astype(np.float64)
    pts = means[:, None] + np.einsum("nij,nj,dj->ndi", rot, scales, dirs)
    return np.concatenate([means[:, None], pts], axis=1)


def gripper_boxes_world(gripper, width, pose):
    """[(world corners [8, 3], local test) ...] of the fingers and the palm."""
    return [
        (box_corners(c, h) @ pose[:3, :3].T + pose[:3, 3], c, h) for c, h in gripper.boxes(width)
    ]


def assert_gripper_free(d, grasps, gripper, obstacles, opacity) -> None:
    solid = obstacles[opacity[obstacles] > 0.5]
    probes = gaussian_probe_points(d, solid).reshape(-1, 3)
    reach = np.linalg.norm([gripper.span, gripper.finger_length + gripper.palm_depth, 0.1])
    for i, pose in enumerate(grasps.poses()):
        assert grasps.widths[i] <= gripper.max_opening
        near = probes[np.linalg.norm(probes - pose[:3, 3], axis=1) <= reach]
        for corners, c, h in gripper_boxes_world(gripper, grasps.widths[i], pose):
            local = (near - pose[:3, 3]) @ pose[:3, :3]
            assert not (np.abs(local - c) <= h).all(axis=1).any(), f"grasp {i} collides"
            # Nothing below the table top: no approach from underneath.
            assert corners[:, 2].min() > 0.0, f"grasp {i} reaches below the table"


def closing_segment_distance(grasps, i: int, points: np.ndarray) -> float:
    """Distance from the segment between the fingertips of grasp i to the nearest point."""
    pose = grasps.poses()[i]
    a = pose[:3, 3] - pose[:3, 1] * grasps.widths[i] / 2
    ab = pose[:3, 1] * grasps.widths[i]
    t = np.clip((points - a) @ ab / (ab @ ab), 0.0, 1.0)
    return float(np.linalg.norm(points - (a + t[:, None] * ab), axis=1).min())


def test_top_handle_grasps_close_across_the_handle_and_touch_nothing(demo) -> None:
    d, model, opacity = demo
    handle = _parts(d, "mug_handle")
    gripper = ParallelJawGripper()
    grasps = plan_grasps(model, handle, gripper=gripper, name="handle")
    assert len(grasps) >= 5, grasps.message
    top = grasps.positions[:5]
    # The handle is a tube of radius `minor` around an arc: the segment between the
    # fingertips passes through the tube when it comes closer than `minor` to the arc.
    theta = np.radians(np.linspace(-HANDLE["half_arc_deg"], HANDLE["half_arc_deg"], 400))
    centre = np.array([MUG["center"][0] + MUG["radius"], MUG["center"][1], HANDLE["z"]])
    arc = centre + HANDLE["major"] * np.stack([np.cos(theta), 0 * theta, np.sin(theta)], 1)
    for i in range(5):
        assert closing_segment_distance(grasps, i, arc) < 0.6 * HANDLE["minor"]
        assert grasps.widths[i] > 2 * HANDLE["minor"]  # the fingertips lie outside the tube
    assert_gripper_free(d, grasps, gripper, np.flatnonzero(d.part_labels.numpy() != 2), opacity)
    # on the handle: between the mug wall and the handle's outer edge
    assert (top[:, 0] > MUG["center"][0] + MUG["radius"]).all()
    assert (np.diff(grasps.scores) <= 0).all() and grasps.scores[0] <= 1.0


def test_whole_mug_with_a_narrow_gripper_is_grasped_at_the_handle_or_the_rim(demo) -> None:
    d, model, opacity = demo
    mug = _objects(d, "mug")
    handle = _parts(d, "mug_handle")
    gripper = ParallelJawGripper(max_opening=0.06)  # narrower than the mug (0.09)
    grasps = plan_grasps(model, mug, gripper=gripper, options=GraspOptions(max_grasps=20))
    assert len(grasps) >= 5, grasps.message
    assert_gripper_free(d, grasps, gripper, np.flatnonzero(d.object_labels.numpy() != 1), opacity)
    means = d.scene.means.numpy().astype(np.float64)
    cx, cy = MUG["center"]
    for i, pose in enumerate(grasps.poses()):
        c, y = pose[:3, 3], pose[:3, 1]
        radial = np.array([c[0] - cx, c[1] - cy, 0.0])
        r = np.linalg.norm(radial)
        on_rim = (
            c[2] >= MUG["height"] - gripper.finger_length  # the fingers reach over the rim
            and abs(r - MUG["radius"]) < 0.01
            and abs(y @ radial / r) > 0.8  # squeezing the wall
        )
        on_handle = closing_segment_distance(grasps, i, means[handle]) < 0.002
        assert on_rim or on_handle, f"grasp {i} at {c} is neither on the rim nor the handle"


def test_grasp_frames_are_right_handed_and_quaternions_match(demo) -> None:
    d, model, _ = demo
    grasps = plan_grasps(model, _parts(d, "mug_handle"), options=GraspOptions(max_grasps=6))
    rot = grasps.rotations
    np.testing.assert_allclose(
        np.einsum("gji,gjk->gik", rot, rot), np.tile(np.eye(3), (6, 1, 1)), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    want = Rotation.from_matrix(rot).as_quat()  # x y z w
    got = grasps.quaternions_xyzw()
    np.testing.assert_allclose(np.abs(np.sum(got * want, axis=1)), 1.0, atol=1e-12)
    assert (got[:, 3] >= 0).all()
    doc = grasps.to_json()
    assert [g["score"] for g in doc] == grasps.scores.tolist()
    assert set(doc[0]) >= {"position", "quaternion_xyzw", "width", "score"}
    assert set(doc[0]["terms"]) == set(GRASP_TERMS)


def test_same_seed_same_grasps_other_seed_other_contacts(demo) -> None:
    d, model, _ = demo
    region = _parts(d, "mug_handle")
    a = plan_grasps(model, region, options=GraspOptions(seed=5))
    b = plan_grasps(model, region, options=GraspOptions(seed=5))
    c = plan_grasps(model, region, options=GraspOptions(seed=6))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.rotations, b.rotations)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.contacts, c.contacts)


def test_reference_plans_the_same_grasps(demo) -> None:
    d, model, _ = demo
    options = GraspOptions(num_contacts=8, max_grasps=5)
    region = _parts(d, "mug_handle")
    fast = plan_grasps(model, region, options=options)
    ref = plan_grasps(model, region, options=options, reference=True)
    np.testing.assert_allclose(fast.positions, ref.positions, atol=1e-12)
    np.testing.assert_allclose(fast.scores, ref.scores, atol=1e-9)


def test_first_approach_comes_from_the_cameras(demo) -> None:
    d, model, _ = demo
    region = _parts(d, "mug_handle")
    view_points = d.scene.means.numpy().astype(np.float64) + np.array([1.0, 0.0, 0.0])
    contacts = sample_contacts(model, region, view_points=view_points)
    _, z = contacts.approach_axes(4)
    seen = np.abs(contacts.y[:, 0]) < 0.9  # +x is not along the closing axis
    # approach 0 points from +x toward the object, as far as it can around y
    assert (z[seen, 0, 0] < -0.4).all()


# -- bad input and empty answers ------------------------------------------------------------------
def test_bad_regions_and_parameters_are_one_line_errors(demo) -> None:
    d, model, opacity = demo
    handle = _parts(d, "mug_handle")
    with pytest.raises(GraspError, match="empty"):
        plan_grasps(model, np.zeros(0, np.int64))
    transparent = np.flatnonzero(opacity < 0.5)
    few = np.concatenate([handle[:2], transparent[:5]]) if transparent.size else handle[:2]
    with pytest.raises(GraspError, match="at least 3"):
        plan_grasps(model, few)
    with pytest.raises(GraspError, match="indices"):
        plan_grasps(model, np.array([model.slot.size]))
    for bad in (0.0, -0.01, float("nan"), float("inf")):
        with pytest.raises(GripperError, match="max_opening"):
            plan_grasps(model, handle, gripper=ParallelJawGripper(max_opening=bad))
        with pytest.raises(GripperError, match="palm_depth"):
            plan_grasps(model, handle, gripper=ParallelJawGripper(palm_depth=bad))
    with pytest.raises(GripperError, match="wider than the whole scene"):
        plan_grasps(model, handle, gripper=ParallelJawGripper(max_opening=80.0))  # millimetres
    with pytest.raises(GraspError, match="max_grasps"):
        plan_grasps(model, handle, options=GraspOptions(max_grasps=0))
    with pytest.raises(GraspError, match="weights"):
        plan_grasps(model, handle, options=GraspOptions(weights=(0.0, 0.0, 0.0, 0.0)))
    for region, gripper in ((handle[:0], None), (handle, ParallelJawGripper(max_opening=-1))):
        with pytest.raises(QueryError) as info:
            plan_grasps(model, region, gripper=gripper)
        assert "\n" not in str(info.value)


def test_no_feasible_grasp_is_an_empty_answer_that_says_why(demo) -> None:
    d, model, _ = demo
    tiny = ParallelJawGripper(max_opening=0.012, clearance=0.004)
    grasps = plan_grasps(model, _parts(d, "box"), gripper=tiny, name="box")
    assert grasps.empty and len(grasps.to_json()) == 0
    assert "no feasible grasp on 'box'" in grasps.message
    assert "wider than max_opening" in grasps.message
    assert grasps.stats["feasible"] == 0 and grasps.stats["candidates"] > 0


def test_gripper_geometry() -> None:
    g = ParallelJawGripper()
    boxes = g.boxes(0.03)
    np.testing.assert_allclose(boxes[0, 0], [0.0, -(0.015 + 0.005), -0.025])
    np.testing.assert_allclose(boxes[1, 0], [0.0, 0.015 + 0.005, -0.025])
    np.testing.assert_allclose(boxes[2, 1], [0.01, 0.05, 0.02])  # palm spans the full opening
    # inner faces of the fingers at +-width/2, fingertips at z = 0
    assert np.isclose(boxes[1, 0, 1] - boxes[1, 1, 1], 0.015)
    assert np.isclose(boxes[0, 0, 2] + boxes[0, 1, 2], 0.0)
    assert len(BOX_EDGES) == 12
    assert g.scaled(1000.0).max_opening == 80.0
    with pytest.raises(GripperError, match="clearance"):
        ParallelJawGripper(max_opening=0.01, clearance=0.005).validated()


def test_grasp_bench_rows_describe_a_3000_gaussian_region() -> None:
    """The latency helper `gsbp bench` calls (no speed asserted: numbers go to the docs)."""
    from gsbp_ros.bench.grasps import grasp_bench_rows

    rows = grasp_bench_rows(quick=True, repeat=1)
    assert len(rows) == 1
    row = rows[0]
    assert 2900 <= int(row["region Gaussians"]) <= 3200
    assert int(row["grasps"]) > 0 and int(row["feasible"]) >= int(row["grasps"])
    assert float(row["plan, wall (ms)"]) > 0 and float(row["plan, thread CPU (ms)"]) > 0


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from gsbp_ros.demo_scene import write_demo_scene

    out = tmp_path_factory.mktemp("grasp_demo")
    write_demo_scene(out, num_views=6, width=120, height=90, density=0.6)
    return out


def _cli(demo_dir, *args: str) -> list[str]:
    return [
        "grasps",
        "--scene",
        str(demo_dir / "scene.ply"),
        "--cameras",
        str(demo_dir / "sparse" / "0"),
        "--sources",
        "labels",
        "--label-maps",
        str(demo_dir / "labels" / "parts"),
        "--cache-dir",
        str(demo_dir / "cache"),
        *args,
    ]


def test_cli_writes_ranked_grasps_and_draws_them(demo_dir, tmp_path, capsys) -> None:
    import json

    from PIL import Image

    from gsbp_ros.cli import main

    out, png = tmp_path / "grasps.json", tmp_path / "grasps.png"
    assert main(_cli(demo_dir, "--text", "mug_handle", "--out", str(out), "--png", str(png))) == 0
    doc = json.loads(out.read_text())
    assert 1 <= len(doc) <= 10
    assert [g["score"] for g in doc] == sorted((g["score"] for g in doc), reverse=True)
    for g in doc:
        assert len(g["position"]) == 3 and len(g["quaternion_xyzw"]) == 4
        assert np.isclose(np.linalg.norm(g["quaternion_xyzw"]), 1.0)
        assert 0 < g["width"] <= 0.08 and g["region"] == "mug_handle"
    img = np.asarray(Image.open(png))
    assert img.shape == (270, 360, 3)
    # the best gripper's green edges are on the picture
    green = (img[..., 1] > 150) & (img[..., 0] < 80) & (img[..., 2] < 80)
    assert green.sum() > 50
    # the same region from a selection file (scores 1: the ranking may differ)
    labels = np.load(demo_dir / "part_labels.npy")
    names = json.loads((demo_dir / "names.json").read_text())["parts"]
    sel = tmp_path / "sel.json"
    handle = np.flatnonzero(labels == names.index("mug_handle"))
    sel.write_text(json.dumps({"name": "handle", "indices": handle.tolist()}))
    out2 = tmp_path / "grasps2.json"
    assert main(_cli(demo_dir, "--indices", str(sel), "--out", str(out2))) == 0
    assert "grasps on 'handle'" in capsys.readouterr().out
    assert json.loads(out2.read_text())


def test_cli_bad_input_is_one_line(demo_dir, tmp_path, capsys) -> None:
    import json

    from gsbp_ros.cli import main

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"name": "nothing", "indices": []}))
    out = tmp_path / "g.json"
    cases = [
        (["--indices", str(empty)], "the region is empty"),
        (["--text", "mug_handle", "--max-opening", "nan"], "max_opening must be a positive"),
        (["--text", "mug_handle", "--finger-length", "0"], "finger_length must be a positive"),
        (["--text", "mug_handle", "--max-opening", "80"], "wider than the whole scene"),
        (["--indices", str(tmp_path / "missing.json")], "cannot read the selection"),
    ]
    for args, want in cases:
        assert main(_cli(demo_dir, *args, "--out", str(out))) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("gsbp: error: ") and want in err[-1], err
    assert not out.exists()  # nothing written on failure
