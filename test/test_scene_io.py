"""Scene files: Inria .ply and gsplat checkpoints, round trips and error messages."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gsbp_ros import scene_io
from gsbp_ros.errors import SceneError
from gsbp_ros.scene import GaussianScene
from gsbp_ros.scene_io import load_scene, ply_property_names, save_scene


def random_scene(n: int = 7, degree: int = 0, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianScene(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g) * 3,  # deliberately not unit length
        log_scales=torch.randn(n, 3, generator=g) - 3,
        logit_opacities=torch.randn(n, generator=g),
        sh=torch.randn(n, k, 3, generator=g),
    )


def assert_same_scene(a: GaussianScene, b: GaussianScene) -> None:
    for name in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.dtype == tb.dtype == torch.float32, name
        assert torch.equal(ta, tb), name


def write_ascii_ply(path: Path, names: list[str], rows: list[list[float]], types=None) -> None:
    types = types or ["float"] * len(names)
    header = ["ply", "format ascii 1.0", "comment hand written", f"element vertex {len(rows)}"]
    header += [f"property {t} {n}" for t, n in zip(types, names)]
    header.append("end_header")
    body = [" ".join(repr(v) for v in row) for row in rows]
    path.write_text("\n".join(header + body) + "\n")


def write_binary_ply(path: Path, names: list[str], table: np.ndarray, count=None) -> None:
    count = len(table) if count is None else count
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    header += [f"property float {n}" for n in names] + ["end_header"]
    path.write_bytes(("\n".join(header) + "\n").encode() + table.astype("<f4").tobytes())


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 3])
@pytest.mark.parametrize("suffix", [".ply", ".pt", ".ckpt"])
def test_round_trip_is_exact(tmp_path, degree, suffix):
    scene = random_scene(n=11, degree=degree, seed=degree)
    path = tmp_path / f"scene{suffix}"
    save_scene(scene, path)
    back = load_scene(path)
    assert back.sh_degree == degree
    assert_same_scene(scene, back)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_saved_ply_has_standard_header_and_channel_major_rest(tmp_path):
    scene = random_scene(n=3, degree=1)
    path = tmp_path / "s.ply"
    save_scene(scene, path)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    names = [ln.split()[2] for ln in header.decode().splitlines() if ln.startswith("property")]
    assert names == ply_property_names(1)
    assert b"format binary_little_endian 1.0" in header
    table = np.frombuffer(body, dtype="<f4").reshape(3, len(names))
    col = {n: table[:, i] for i, n in enumerate(names)}
    # f_rest_j for j in 0..2 are the red coefficients of bands 1..3, then green, then blue
    for j in range(9):
        channel, band = divmod(j, 3)
        assert np.array_equal(col[f"f_rest_{j}"], scene.sh[:, 1 + band, channel].numpy())
    assert np.all(col["nx"] == 0) and np.all(col["nz"] == 0)


def test_scene_methods_delegate(tmp_path):
    scene = random_scene(degree=2)
    scene.save(tmp_path / "a.pth")
    assert_same_scene(scene, GaussianScene.load(tmp_path / "a.pth"))


# -- hand-written files -----------------------------------------------------------------------


def test_ascii_ply_known_values_channel_major_and_unnormalised_quats(tmp_path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(9)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    row = [1.5, -2.0, 3.25, 0.1, 0.2, 0.3]
    row += [10.0, 11.0, 12.0, 20.0, 21.0, 22.0, 30.0, 31.0, 32.0]  # R band1..3, G..., B...
    row += [2.5, -1.0, -2.0, -3.0, 2.0, 0.0, 0.0, 0.0]
    path = tmp_path / "hand.ply"
    write_ascii_ply(path, names, [row, [v * 0.5 for v in row]])
    scene = load_scene(path)
    assert scene.num_gaussians == 2 and scene.sh_degree == 1
    expected_sh0 = torch.tensor(
        [[0.1, 0.2, 0.3], [10.0, 20.0, 30.0], [11.0, 21.0, 31.0], [12.0, 22.0, 32.0]]
    )
    assert torch.equal(scene.sh[0], expected_sh0)
    assert torch.equal(scene.sh[1], expected_sh0 * 0.5)
    assert torch.equal(scene.means[0], torch.tensor([1.5, -2.0, 3.25]))
    assert torch.equal(scene.quats[0], torch.tensor([2.0, 0.0, 0.0, 0.0]))  # kept as stored
    assert torch.equal(scene.logit_opacities, torch.tensor([2.5, 1.25]))
    assert torch.equal(scene.log_scales[0], torch.tensor([-1.0, -2.0, -3.0]))


def test_shuffled_property_order_extra_properties_and_types(tmp_path):
    scene = random_scene(n=5, degree=1, seed=3)
    names = ply_property_names(1)
    table = torch.cat(
        [
            scene.means,
            torch.zeros(5, 3),
            scene.sh[:, 0],
            scene.sh[:, 1:].transpose(1, 2).reshape(5, -1),
            scene.logit_opacities[:, None],
            scene.log_scales,
            scene.quats,
        ],
        dim=1,
    ).numpy()
    perm = np.random.default_rng(0).permutation(len(names))
    names_shuffled = [names[i] for i in perm] + ["red", "confidence"]
    extra = np.stack([np.arange(5) % 256, np.linspace(0, 1, 5)], axis=1)
    rows = np.concatenate([table[:, perm].astype(np.float64), extra], axis=1)
    types = ["float"] * len(names) + ["uchar", "double"]
    # binary: a structured array with mixed types
    dtype = np.dtype(
        [
            (n, "<" + {"float": "f4", "uchar": "u1", "double": "f8"}[t])
            for n, t in zip(names_shuffled, types)
        ]
    )
    arr = np.empty(5, dtype=dtype)
    for i, n in enumerate(names_shuffled):
        arr[n] = rows[:, i]
    header = ["ply", "format binary_little_endian 1.0", "element vertex 5"]
    header += [f"property {t} {n}" for t, n in zip(types, names_shuffled)] + ["end_header"]
    path = tmp_path / "shuffled.ply"
    path.write_bytes(("\n".join(header) + "\n").encode() + arr.tobytes())
    assert_same_scene(scene, load_scene(path))
    # ascii with the same order
    path_a = tmp_path / "shuffled_ascii.ply"
    write_ascii_ply(path_a, names_shuffled, rows.tolist(), types)
    assert_same_scene(scene, load_scene(path_a))


def test_double_properties_and_big_endian(tmp_path):
    scene = random_scene(n=4, degree=0, seed=5)
    names = ply_property_names(0)
    table = np.concatenate(
        [
            scene.means.numpy(),
            np.zeros((4, 3)),
            scene.sh[:, 0].numpy(),
            scene.logit_opacities[:, None].numpy(),
            scene.log_scales.numpy(),
            scene.quats.numpy(),
        ],
        axis=1,
    ).astype(">f8")
    header = ["ply", "format binary_big_endian 1.0", "element vertex 4"]
    header += [f"property double {n}" for n in names] + ["end_header"]
    path = tmp_path / "be.ply"
    path.write_bytes(("\n".join(header) + "\n").encode() + table.tobytes())
    assert_same_scene(scene, load_scene(path))


class ArbitraryObject:
    """Pickled by reference: weights_only loading must refuse it."""


# -- bad inputs -------------------------------------------------------------------------------


def _standard_table(n: int, degree: int = 0) -> tuple[list[str], np.ndarray]:
    names = ply_property_names(degree)
    table = np.ones((n, len(names)), dtype=np.float32)
    return names, table


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(SceneError, match="not found"):
        load_scene(tmp_path / "nope.ply")
    (tmp_path / "scene.obj").write_text("v 0 0 0\n")
    with pytest.raises(SceneError, match=r"unknown scene file type '\.obj'"):
        load_scene(tmp_path / "scene.obj")
    with pytest.raises(SceneError, match="unknown scene file type"):
        save_scene(random_scene(), tmp_path / "scene.npz")


def test_not_a_ply(tmp_path):
    path = tmp_path / "fake.ply"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SceneError, match="not a PLY file"):
        load_scene(path)


def test_missing_properties_are_named(tmp_path):
    names, table = _standard_table(3)
    keep = [i for i, n in enumerate(names) if n not in ("opacity", "rot_2")]
    path = tmp_path / "m.ply"
    write_binary_ply(path, [names[i] for i in keep], table[:, keep])
    with pytest.raises(SceneError, match="lacks 3DGS properties opacity, rot_2"):
        load_scene(path)


def test_f_rest_count_must_match_a_degree(tmp_path):
    names, table = _standard_table(2, degree=1)
    drop = names.index("f_rest_8")
    keep = [i for i in range(len(names)) if i != drop]
    path = tmp_path / "r.ply"
    write_binary_ply(path, [names[i] for i in keep], table[:, keep])
    with pytest.raises(SceneError, match="8 f_rest_"):
        load_scene(path)


def test_truncated_binary_and_ascii(tmp_path):
    names, table = _standard_table(4)
    path = tmp_path / "t.ply"
    write_binary_ply(path, names, table, count=5)
    with pytest.raises(SceneError, match=r"truncated PLY.*5 vertices"):
        load_scene(path)
    path_a = tmp_path / "ta.ply"
    write_ascii_ply(path_a, names, table.tolist())
    path_a.write_text(path_a.read_text().replace("element vertex 4", "element vertex 6"))
    with pytest.raises(SceneError, match=r"truncated PLY.*6 vertices.*4 vertex lines"):
        load_scene(path_a)


def test_ascii_row_with_wrong_value_count(tmp_path):
    names, table = _standard_table(2)
    path = tmp_path / "w.ply"
    write_ascii_ply(path, names, table.tolist())
    text = path.read_text().rstrip("\n").rsplit("\n", 1)[0] + "\n1 2 3\n"
    path.write_text(text)
    with pytest.raises(SceneError, match="vertex 1 has 3 values"):
        load_scene(path)


def test_zero_vertices(tmp_path):
    names, table = _standard_table(0)
    path = tmp_path / "z.ply"
    write_binary_ply(path, names, table)
    with pytest.raises(SceneError, match="zero vertices"):
        load_scene(path)


def test_non_finite_values_name_the_file(tmp_path):
    names, table = _standard_table(3)
    table[1, names.index("scale_1")] = np.nan
    path = tmp_path / "nan.ply"
    write_binary_ply(path, names, table)
    with pytest.raises(SceneError, match=r"nan\.ply: log_scales has non-finite.*index 1"):
        load_scene(path)


def test_bad_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(SceneError, match="weights_only=True"):
        load_scene(garbage)

    pickled = tmp_path / "object.pt"
    torch.save({"splats": ArbitraryObject()}, pickled)
    with pytest.raises(SceneError, match="cannot load as a gsplat checkpoint"):
        load_scene(pickled)

    listy = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], listy)
    with pytest.raises(SceneError, match="holds a list"):
        load_scene(listy)

    partial = tmp_path / "partial.ckpt"
    torch.save({"splats": {"means": torch.zeros(2, 3), "quats": torch.ones(2, 4)}}, partial)
    with pytest.raises(SceneError, match="lacks splats scales, opacities, sh0"):
        load_scene(partial)


def test_bare_checkpoint_dict_and_column_opacities(tmp_path):
    scene = random_scene(n=6, degree=1, seed=9)
    bare = {
        "means": scene.means,
        "quats": scene.quats,
        "scales": scene.log_scales,
        "opacities": scene.logit_opacities[:, None],
        "sh0": scene.sh[:, :1],
        "shN": scene.sh[:, 1:],
    }
    path = tmp_path / "bare.pth"
    torch.save(bare, path)
    assert_same_scene(scene, load_scene(path))


def test_failed_ply_save_leaves_previous_file_and_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "scene.ply"
    first = random_scene(seed=1)
    save_scene(first, path)
    before = path.read_bytes()

    def fail(scene):
        raise RuntimeError("disk full")

    monkeypatch.setattr(scene_io, "_ply_body", fail)  # header already written at this point
    with pytest.raises(RuntimeError, match="disk full"):
        save_scene(random_scene(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.ply"]

    with pytest.raises(RuntimeError, match="disk full"):
        save_scene(random_scene(seed=2), tmp_path / "fresh.ply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.ply"]


def test_failed_checkpoint_save_leaves_no_partial(tmp_path, monkeypatch):
    def half_save(obj, f):
        f.write(struct.pack("<Q", 1234))
        raise OSError("no space left")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="no space"):
        save_scene(random_scene(), tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []
