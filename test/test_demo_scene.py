"""The procedural tabletop: geometry, labels, files, and a lift of its label maps to 3D."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gsbp_ros import demo_scene as ds
from gsbp_ros.cameras import load_cameras, project
from gsbp_ros.demo_scene import make_demo_scene, write_demo_scene
from gsbp_ros.scene import SH_C0
from gsbp_ros.scene_io import load_scene


@pytest.fixture(scope="module")
def demo():
    return make_demo_scene(seed=0)


def rotmats(quats: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] from w x y z (the standard formula, written out independently here)."""
    w, x, y, z = (quats / quats.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1),
        ],
        dim=1,
    )


def part_mask(demo, name: str) -> torch.Tensor:
    return demo.part_labels == demo.part_names.index(name)


# -- geometry and labels -----------------------------------------------------------------------


def test_sizes_names_and_label_consistency(demo):
    n = demo.scene.num_gaussians
    assert 15_000 <= n <= 25_000
    assert demo.object_names == ["table", "mug", "bowl", "box", "bottle"]
    assert demo.part_names == [
        "table_top",
        "mug_body",
        "mug_handle",
        "bowl",
        "box",
        "bottle_body",
        "bottle_cap",
    ]
    assert demo.object_labels.dtype == demo.part_labels.dtype == torch.int64
    assert demo.object_labels.shape == demo.part_labels.shape == (n,)
    mapped = torch.tensor(demo.part_to_object)[demo.part_labels]
    assert torch.equal(mapped, demo.object_labels)
    assert set(demo.part_labels.tolist()) == set(range(len(demo.part_names)))
    lo, hi = demo.scene.bounds()
    assert 0.8 < float((hi - lo).max()) < 1.3  # about a metre


def _part_areas() -> dict[str, float]:
    """Analytic surface areas of the layout (m^2)."""
    sx, sy = ds.TABLE["size"]
    th = ds.TABLE["thickness"]
    r, h = ds.MUG["radius"], ds.MUG["height"]
    hd = ds.HANDLE
    arc = 2 * math.radians(hd["half_arc_deg"]) * hd["major"]
    bx, by, bz = ds.BOX["size"]
    b = ds.BOTTLE
    shoulder = (
        math.pi
        * (b["radius"] + b["neck_radius"])
        * math.hypot(b["radius"] - b["neck_radius"], b["neck_bottom"] - b["body_top"])
    )
    cap_h = b["cap_top"] - b["neck_top"] + 0.003
    return {
        "table_top": sx * sy + 2 * (sx + sy) * th,
        "mug_body": 2 * math.pi * r * h + math.pi * (0.97 * r) ** 2,
        "mug_handle": 2 * math.pi * hd["minor"] * arc,
        "bowl": 2 * math.pi * ds.BOWL["radius"] ** 2,
        "box": bx * by + 2 * (bx + by) * bz,
        "bottle_body": 2 * math.pi * b["radius"] * b["body_top"]
        + shoulder
        + 2 * math.pi * b["neck_radius"] * (b["neck_top"] - b["neck_bottom"]),
        "bottle_cap": 2 * math.pi * b["cap_radius"] * cap_h + math.pi * b["cap_radius"] ** 2,
    }


@pytest.mark.parametrize("density", [1.0, 0.5])
def test_part_counts_follow_area_and_density(density):
    demo = make_demo_scene(density=density)
    counts = torch.bincount(demo.part_labels, minlength=len(demo.part_names))
    for name, area in _part_areas().items():
        spacing = ds.TABLE_SPACING if name == "table_top" else ds.OBJECT_SPACING
        expected = area * density / spacing**2
        got = int(counts[demo.part_names.index(name)])
        assert abs(got - expected) < 0.12 * expected, (name, got, expected)


def test_objects_do_not_overlap_and_stand_on_the_table(demo):
    means = demo.scene.means
    table = means[demo.object_labels == 0]
    tlo, thi = table.min(0).values, table.max(0).values
    assert float(thi[2]) == 0.0  # the table top is the plane z = 0
    boxes = []
    for i in range(1, len(demo.object_names)):
        pts = means[demo.object_labels == i]
        lo, hi = pts.min(0).values, pts.max(0).values
        assert float(lo[2]) >= -1e-6 and float(hi[2]) > 0.03  # on the table, not in it
        assert (lo[:2] > tlo[:2]).all() and (hi[:2] < thi[:2]).all()
        boxes.append((demo.object_names[i], lo, hi))
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            (na, la, ha), (nb, lb, hb) = boxes[a], boxes[b]
            disjoint = (ha[:2] < lb[:2]).any() or (hb[:2] < la[:2]).any()
            assert disjoint, f"{na} and {nb} overlap"


def test_handle_is_outside_the_mug_body(demo):
    means = demo.scene.means.double()
    body = means[part_mask(demo, "mug_body")]
    handle = means[part_mask(demo, "mug_handle")]
    wall = body[body[:, 2] > 0.02]  # the side wall, not the inner floor disc
    axis = wall[:, :2].mean(0)
    body_radius = (wall[:, :2] - axis).norm(dim=1)
    assert body_radius.std() < 1e-3  # a cylinder
    handle_radius = (handle[:, :2] - axis).norm(dim=1)
    assert handle_radius.min() > body_radius.max() + 1e-3
    # on one side of the mug, within its height
    direction = (handle[:, :2] - axis).mean(0)
    assert ((handle[:, :2] - axis) @ direction > 0).all()
    assert handle[:, 2].max() < wall[:, 2].max()


def test_gaussians_are_flat_along_the_surface_normal(demo):
    scene = demo.scene
    axes = rotmats(scene.quats.double())
    scales = scene.scales().double()
    assert (scales[:, 2] * 5 < scales[:, :2].min(dim=1).values).all()
    normal_axis = axes[:, :, 2]  # the third Gaussian axis carries the smallest scale
    means = scene.means.double()
    # independent normals from the shapes themselves
    top = part_mask(demo, "table_top") & (means[:, 2] == 0)
    assert int(top.sum()) > 1000
    assert torch.allclose(normal_axis[top].abs()[:, 2], torch.ones(1, dtype=torch.float64))
    bowl = part_mask(demo, "bowl")
    c = torch.tensor([*ds.BOWL["center"], ds.BOWL["radius"]], dtype=torch.float64)
    radial = (means[bowl] - c) / (means[bowl] - c).norm(dim=1, keepdim=True)
    assert ((normal_axis[bowl] * radial).sum(1).abs() > 1 - 1e-5).all()
    wall = part_mask(demo, "mug_body") & (means[:, 2] > 0.02)
    d = means[wall, :2] - torch.tensor(ds.MUG["center"], dtype=torch.float64)
    radial = torch.cat([d / d.norm(dim=1, keepdim=True), torch.zeros(len(d), 1)], 1)
    assert ((normal_axis[wall] * radial).sum(1).abs() > 1 - 1e-5).all()
    # the stored normals agree with the Gaussian frames
    assert ((normal_axis * demo.normals.double()).sum(1).abs() > 1 - 1e-5).all()


def test_normals_point_outward_on_convex_objects(demo):
    means, normals = demo.scene.means.double(), demo.normals.double()
    for name in ("box", "table_top", "bottle_body"):
        m = part_mask(demo, name)
        center = means[m].mean(0)
        if name == "bottle_body":  # radial only: compare in the horizontal plane
            center = torch.cat([center[:2], means[m, 2:3].new_zeros(1)])
            offset = means[m] * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) - center
        else:
            offset = means[m] - center
        assert ((offset * normals[m]).sum(1) > 0).float().mean() > 0.99, name


def test_colours_opacities_and_determinism(demo):
    scene = demo.scene
    assert scene.sh_degree == 0
    colors = SH_C0 * scene.sh[:, 0].double() + 0.5
    means = []
    for i, name in enumerate(demo.part_names):
        c = colors[demo.part_labels == i]
        want = torch.tensor(ds.PART_COLORS[name], dtype=torch.float64)
        assert (c - want).abs().max() <= 0.04 + 1e-6, name
        means.append(c.mean(0))
    means = torch.stack(means)
    dist = torch.cdist(means, means) + torch.eye(len(means)) * 9
    assert dist.min() > 0.2  # every part has its own colour
    opac = scene.opacities()
    assert opac.min() > torch.sigmoid(torch.tensor(2.99)) and opac.max() < 0.994
    again = make_demo_scene(seed=0)
    assert torch.equal(again.scene.means, scene.means)
    assert torch.equal(again.scene.sh, scene.sh)
    other = make_demo_scene(seed=1)
    assert not torch.equal(other.scene.means, scene.means)
    assert make_demo_scene(sh_degree=1).scene.sh.shape[1] == 4


def test_cameras_see_every_object_from_several_sides(demo):
    cams = demo.cameras(num_views=8, width=96, height=72)
    assert len(cams) == 8 and all((c.width, c.height) == (96, 72) for c in cams)
    means = demo.scene.means.double()
    for i, name in enumerate(demo.object_names[1:], 1):
        center = means[demo.object_labels == i].mean(0, keepdim=True)
        inside = 0
        for cam in cams:
            uv, z = project(cam, center)
            inside += bool(z[0] > 0 and 0 <= uv[0, 0] < 96 and 0 <= uv[0, 1] < 72)
        assert inside == 8, name


# -- files and the lift -------------------------------------------------------------------------

VIEWS, WIDTH, HEIGHT = 8, 120, 90


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    demo = write_demo_scene(out, num_views=VIEWS, width=WIDTH, height=HEIGHT, seed=0)
    return out, demo


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_written_files_are_consistent(written):
    out, demo = written
    names = json.loads((out / "names.json").read_text())
    assert names["objects"] == demo.object_names and names["parts"] == demo.part_names
    assert np.array_equal(np.load(out / "labels.npy"), demo.object_labels.numpy())
    assert np.array_equal(np.load(out / "part_labels.npy"), demo.part_labels.numpy())
    scene = load_scene(out / "scene.ply")
    assert torch.equal(scene.means, demo.scene.means) and torch.equal(scene.sh, demo.scene.sh)
    colmap = load_cameras(out / "sparse" / "0")
    nerf = load_cameras(out / "transforms.json")
    assert (
        [c.stem for c in colmap]
        == [c.stem for c in nerf]
        == [f"orbit_{i:03d}" for i in range(VIEWS)]
    )
    seen_in = {i: 0 for i in range(1, len(demo.object_names))}
    for cam, cam_json in zip(colmap, nerf):
        assert (cam.width, cam.height) == (WIDTH, HEIGHT)
        assert (out / cam_json.name).is_file()  # file_path is relative to transforms.json
        rgb = _png(out / "images" / f"{cam.stem}.png")
        obj = _png(out / "labels" / "objects" / f"{cam.stem}.png")
        part = _png(out / "labels" / "parts" / f"{cam.stem}.png")
        assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
        assert obj.shape == part.shape == (HEIGHT, WIDTH) and obj.dtype == np.uint8
        assert obj.max() <= len(demo.object_names) and part.max() <= len(demo.part_names)
        assert (obj == 0).any() and (obj == 1).mean() > 0.2  # background and table
        # part maps agree with object maps almost everywhere (mixed pixels may differ)
        part_obj = np.where(part > 0, np.array([0, *[p + 1 for p in demo.part_to_object]])[part], 0)
        assert (part_obj == obj).mean() > 0.99
        # the RGB render shows each part's colour where the part map says it is
        for p, name in enumerate(demo.part_names, 1):
            if (part == p).sum() >= 20:
                mean = rgb[part == p].mean(0) / 255
                assert np.abs(mean - ds.PART_COLORS[name]).max() < 0.12, (cam.stem, name)
        for i in seen_in:
            seen_in[i] += int((obj == i + 1).sum() >= 10)
    assert all(v >= VIEWS - 1 for v in seen_in.values()), seen_in


def test_lifting_object_label_maps_recovers_3d_labels(written):
    from gsbp_ros.raster import compute_view_weights

    out, _ = written
    scene = load_scene(out / "scene.ply")
    names = json.loads((out / "names.json").read_text())["objects"]
    votes = torch.zeros(scene.num_gaussians, len(names))
    for cam in load_cameras(out / "sparse" / "0"):
        labels = torch.from_numpy(
            _png(out / "labels" / "objects" / f"{cam.stem}.png").astype(np.int64)
        )
        onehot = torch.nn.functional.one_hot(labels, len(names) + 1)[..., 1:].float()
        votes += compute_view_weights(scene, cam, engine="torch").backproject(onehot)
    seen = votes.sum(1) > 0
    pred = torch.where(seen, votes.argmax(1), -1)
    truth = torch.from_numpy(np.load(out / "labels.npy"))
    for i, name in enumerate(names):
        inter = ((pred == i) & (truth == i)).sum()
        union = ((pred == i) | (truth == i)).sum()
        assert inter / union >= 0.9, (name, float(inter / union))
