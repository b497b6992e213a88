"""A procedural tabletop scene with ground-truth object and part labels per Gaussian.

World frame: metres, z up, the table top is the plane z = 0 (a 1.0 x 0.7 m slab 4 cm thick)
and the objects stand on it near the origin: a mug with a handle, a bowl (hemisphere shell),
a box (cuboid) and a bottle with a cap. Every Gaussian lies on a surface and is flat along
the surface normal (smallest scale on the normal axis, the quaternion's third axis is the
normal), mostly opaque, and coloured per part with small noise (SH degree 0; colour =
0.2820948 * f_dc + 0.5). ``density`` scales the number of Gaussians (~20k at 1.0).

:func:`write_demo_scene` also writes cameras, RGB renders and per-view label maps rendered
from the same splats, so lifting the 2D labels back to 3D has an exact answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.cameras import orbit_cameras, save_colmap_text, save_transforms_json
from gsbp_ros.errors import SceneError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.scene import SH_C0, GaussianScene

OBJECT_NAMES = ["table", "mug", "bowl", "box", "bottle"]
PART_NAMES = [
    "table_top",
    "mug_body",
    "mug_handle",
    "bowl",
    "box",
    "bottle_body",
    "bottle_cap",
]
PART_TO_OBJECT = [0, 1, 1, 2, 3, 4, 4]
PART_COLORS = {
    "table_top": (0.62, 0.45, 0.30),
    "mug_body": (0.85, 0.18, 0.18),
    "mug_handle": (0.95, 0.85, 0.20),
    "bowl": (0.20, 0.45, 0.88),
    "box": (0.22, 0.70, 0.30),
    "bottle_body": (0.58, 0.30, 0.78),
    "bottle_cap": (0.98, 0.55, 0.08),
}

# Layout (metres). Footprints are disjoint: see test_demo_scene.py.
TABLE = {"size": (1.0, 0.7), "thickness": 0.04}
MUG = {"center": (-0.28, 0.10), "radius": 0.045, "height": 0.10}
HANDLE = {"major": 0.028, "minor": 0.007, "z": 0.052, "half_arc_deg": 65.0}
BOWL = {"center": (0.0, -0.14), "radius": 0.08}
BOX = {"center": (0.22, 0.14), "size": (0.12, 0.08, 0.07), "yaw_deg": 30.0}
BOTTLE = {
    "center": (0.30, -0.12),
    "radius": 0.035,
    "body_top": 0.15,
    "neck_radius": 0.012,
    "neck_bottom": 0.185,
    "neck_top": 0.215,
    "cap_radius": 0.0145,
    "cap_top": 0.24,
}

# Sample spacing at density 1: coarse on the big table, fine on the objects.
TABLE_SPACING = 0.011
OBJECT_SPACING = 0.0035
NORMAL_SCALE_RATIO = 0.1  # scale along the normal / scale along the surface
FRAMING = 0.85  # camera distance, in units of (bounding-sphere radius / sin(half fov))


@dataclass
class DemoScene:
    """The demo scene and its ground truth.

    Attributes:
        scene: the splats.
        object_labels: [N] int64 index into ``object_names`` per Gaussian.
        part_labels: [N] int64 index into ``part_names`` per Gaussian.
        object_names: object names, e.g. ``["table", "mug", ...]``.
        part_names: part names, e.g. ``["table_top", "mug_body", "mug_handle", ...]``.
        part_to_object: object index of each part.
        normals: [N, 3] unit surface normal at each Gaussian (for tests and regions).
    """

    scene: GaussianScene
    object_labels: Tensor
    part_labels: Tensor
    object_names: list[str] = field(default_factory=lambda: list(OBJECT_NAMES))
    part_names: list[str] = field(default_factory=lambda: list(PART_NAMES))
    part_to_object: list[int] = field(default_factory=lambda: list(PART_TO_OBJECT))
    normals: Tensor | None = None

    def cameras(
        self,
        num_views: int = 24,
        width: int = 160,
        height: int = 120,
        *,
        fov_deg: float = 60.0,
        elevations_deg: tuple[float, ...] = (30.0, 55.0),
    ) -> list[Camera]:
        """Orbit views around the objects (each seen from several sides), named
        ``orbit_000.png`` ...; the distance frames the objects' footprint (see ``FRAMING``)."""
        objects = self.scene.means[self.object_labels != 0]
        lo, hi = objects.min(dim=0).values.double(), objects.max(dim=0).values.double()
        center = ((lo + hi) / 2).numpy()
        sphere = 0.5 * float((hi - lo).norm())
        half_fov_x = math.radians(fov_deg) / 2
        half_fov = min(half_fov_x, math.atan(math.tan(half_fov_x) * height / width))
        radius = FRAMING * sphere / math.sin(half_fov)
        return orbit_cameras(
            center,
            radius,
            num_views=num_views,
            width=width,
            height=height,
            fov_deg=fov_deg,
            elevations_deg=elevations_deg,
        )


# ---------------------------------------------------------------------------------------------
# surface samplers: each returns points [M, 3], normals [M, 3], tangents [M, 3], spacing


_Surface = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _jittered_grid(rng: np.random.Generator, nu: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """[nu*nv] u, v in [0, 1): one sample per cell, jittered around the cell centre."""
    iu, iv = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    ju = rng.uniform(0.2, 0.8, size=iu.shape)
    jv = rng.uniform(0.2, 0.8, size=iv.shape)
    return ((iu + ju) / nu).ravel(), ((iv + jv) / nv).ravel()


def _cells(length: float, spacing: float) -> int:
    return max(1, round(length / spacing))


def _rectangle(rng, origin, e1, e2, spacing) -> _Surface:
    """Parallelogram origin + u*e1 + v*e2; normal e1 x e2."""
    origin, e1, e2 = (np.asarray(v, dtype=np.float64) for v in (origin, e1, e2))
    nu, nv = _cells(np.linalg.norm(e1), spacing), _cells(np.linalg.norm(e2), spacing)
    u, v = _jittered_grid(rng, nu, nv)
    pts = origin + u[:, None] * e1 + v[:, None] * e2
    n = np.cross(e1, e2)
    n /= np.linalg.norm(n)
    t = e1 / np.linalg.norm(e1)
    return pts, np.tile(n, (len(pts), 1)), np.tile(t, (len(pts), 1)), spacing


def _frustum(rng, center_xy, r0, r1, z0, z1, spacing) -> _Surface:
    """Lateral surface of a vertical cone frustum (a cylinder when r0 == r1)."""
    slant = math.hypot(r1 - r0, z1 - z0)
    r_mean = 0.5 * (r0 + r1)
    u, v = _jittered_grid(rng, _cells(2 * math.pi * r_mean, spacing), _cells(slant, spacing))
    theta = 2 * math.pi * u
    r = r0 + (r1 - r0) * v
    radial = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1)
    pts = np.stack(
        [center_xy[0] + r * np.cos(theta), center_xy[1] + r * np.sin(theta), z0 + (z1 - z0) * v],
        axis=1,
    )
    # outward normal of a frustum tilts up when it narrows with height
    normals = radial * (z1 - z0) + np.array([0.0, 0.0, 1.0]) * (r0 - r1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    tangents = np.stack([-np.sin(theta), np.cos(theta), np.zeros_like(theta)], axis=1)
    return pts, normals, tangents, spacing


def _disk(rng, center, radius, spacing) -> _Surface:
    """Horizontal disk, normal +z, sunflower (Vogel) spiral for even coverage."""
    m = max(1, round(math.pi * radius**2 / spacing**2))
    k = np.arange(m) + 0.5
    r = radius * np.sqrt(k / m)
    theta = k * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
    pts = np.stack(
        [center[0] + r * np.cos(theta), center[1] + r * np.sin(theta), np.full(m, center[2])],
        axis=1,
    )
    normals = np.tile([0.0, 0.0, 1.0], (m, 1))
    tangents = np.stack([-np.sin(theta), np.cos(theta), np.zeros(m)], axis=1)
    return pts, normals, tangents, spacing


def _lower_hemisphere(rng, center, radius, spacing) -> _Surface:
    """Bowl shell: the lower half of a sphere, Fibonacci points for even coverage."""
    m = max(1, round(2 * math.pi * radius**2 / spacing**2))
    k = np.arange(m) + 0.5
    z = -k / m  # uniform in z over [-1, 0] is uniform in area on the sphere
    theta = k * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
    rho = np.sqrt(1 - z**2)
    d = np.stack([rho * np.cos(theta), rho * np.sin(theta), z], axis=1)
    tangents = np.stack([-np.sin(theta), np.cos(theta), np.zeros(m)], axis=1)
    return np.asarray(center) + radius * d, d, tangents, spacing


def _torus_arc(rng, center, major, minor, half_arc, spacing) -> _Surface:
    """Tube of radius ``minor`` around an arc of radius ``major`` in the xz plane, the arc
    spanning angles [-half_arc, half_arc] from +x (a mug handle on the +x side)."""
    u, v = _jittered_grid(
        rng, _cells(2 * half_arc * major, spacing), _cells(2 * math.pi * minor, spacing)
    )
    theta = (2 * u - 1) * half_arc
    phi = 2 * math.pi * v
    ring = np.stack([np.cos(theta), np.zeros_like(theta), np.sin(theta)], axis=1)
    side = np.array([0.0, 1.0, 0.0])
    normals = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * side
    pts = np.asarray(center) + major * ring + minor * normals
    tangents = np.stack([-np.sin(theta), np.zeros_like(theta), np.cos(theta)], axis=1)
    return pts, normals, tangents, spacing


def _box_faces(rng, center_xy, size, yaw, spacing) -> list[_Surface]:
    """Top and four sides of a box standing on z = 0, rotated by ``yaw`` about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    ex = np.array([c, s, 0.0]) * size[0]
    ey = np.array([-s, c, 0.0]) * size[1]
    ez = np.array([0.0, 0.0, size[2]])
    o = np.array([center_xy[0], center_xy[1], 0.0]) - ex / 2 - ey / 2  # bottom corner
    return [
        _rectangle(rng, o + ez, ex, ey, spacing),  # top, normal +z
        _rectangle(rng, o, ex, ez, spacing),  # ex x ez: outward on the -ey side
        _rectangle(rng, o + ey, ez, ex, spacing),
        _rectangle(rng, o, ez, ey, spacing),
        _rectangle(rng, o + ex, ey, ez, spacing),
    ]


def _table_surfaces(rng, spacing) -> list[_Surface]:
    sx, sy = TABLE["size"]
    th = TABLE["thickness"]
    o = np.array([-sx / 2, -sy / 2, 0.0])
    ex, ey, ez = np.array([sx, 0, 0.0]), np.array([0, sy, 0.0]), np.array([0, 0, -th])
    return [
        _rectangle(rng, o, ex, ey, spacing),  # top, normal +z
        _rectangle(rng, o, ez, ex, spacing),  # ez points down here: ez x ex is -y
        _rectangle(rng, o + ey, ex, ez, spacing),
        _rectangle(rng, o, ey, ez, spacing),
        _rectangle(rng, o + ex, ez, ey, spacing),
    ]


def _parts(rng: np.random.Generator, density: float) -> dict[str, list[_Surface]]:
    fine = OBJECT_SPACING / math.sqrt(density)
    coarse = TABLE_SPACING / math.sqrt(density)
    mx, my = MUG["center"]
    mr, mh = MUG["radius"], MUG["height"]
    handle_center = (mx + mr, my, HANDLE["z"])
    bx, by = BOWL["center"]
    b = BOTTLE
    bc = b["center"]
    return {
        "table_top": _table_surfaces(rng, coarse),
        "mug_body": [
            _frustum(rng, (mx, my), mr, mr, 0.0, mh, fine),
            _disk(rng, (mx, my, 0.006), mr * 0.97, fine),  # inside floor
        ],
        "mug_handle": [
            _torus_arc(
                rng,
                handle_center,
                HANDLE["major"],
                HANDLE["minor"],
                math.radians(HANDLE["half_arc_deg"]),
                fine,
            )
        ],
        "bowl": [_lower_hemisphere(rng, (bx, by, BOWL["radius"]), BOWL["radius"], fine)],
        "box": _box_faces(rng, BOX["center"], BOX["size"], math.radians(BOX["yaw_deg"]), fine),
        "bottle_body": [
            _frustum(rng, bc, b["radius"], b["radius"], 0.0, b["body_top"], fine),
            _frustum(rng, bc, b["radius"], b["neck_radius"], b["body_top"], b["neck_bottom"], fine),
            _frustum(
                rng, bc, b["neck_radius"], b["neck_radius"], b["neck_bottom"], b["neck_top"], fine
            ),
        ],
        "bottle_cap": [
            _frustum(
                rng, bc, b["cap_radius"], b["cap_radius"], b["neck_top"] - 0.003, b["cap_top"], fine
            ),
            _disk(rng, (bc[0], bc[1], b["cap_top"]), b["cap_radius"], fine),
        ],
    }


# ---------------------------------------------------------------------------------------------
# Gaussians from surface samples


def frame_to_quat(t1: np.ndarray, n: np.ndarray) -> np.ndarray:
    """[M, 4] w x y z quaternions of the rotations whose columns are (t1', n x t1', n), with
    t1' = t1 made orthogonal to n. t1, n: [M, 3]."""
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    t1 = t1 - (t1 * n).sum(axis=1, keepdims=True) * n
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    R = np.stack([t1, t2, n], axis=2)  # [M, 3, 3], columns
    return _rotmats_to_quats(R)


def _rotmats_to_quats(R: np.ndarray) -> np.ndarray:
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack(
                [1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]],
                axis=1,
            ),
            np.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                axis=1,
            ),
            np.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 + m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2],
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                axis=1,
            ),
            np.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 + m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1],
                ],
                axis=1,
            ),
        ],
        axis=1,
    )
    # each candidate is 4 q_k q (k = w, x, y, z); pick the best conditioned one per row
    pivot = np.stack(
        [1 + tr, 1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr, 1 + 2 * m[:, 2, 2] - tr], axis=1
    ).argmax(axis=1)
    q = cand[np.arange(len(R)), pivot]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def make_demo_scene(*, seed: int = 0, density: float = 1.0, sh_degree: int = 0) -> DemoScene:
    """Build the tabletop scene.

    Args:
        seed: jitter, colour noise and opacities.
        density: multiplies the number of Gaussians per area (~20k at 1.0).
        sh_degree: 0 or more; higher bands are zero (the colours are view independent).

    Returns:
        a :class:`DemoScene` with per-Gaussian object and part labels.
    """
    if not density > 0 or not math.isfinite(density):
        raise SceneError(f"density must be a positive number, got {density}")
    if not 0 <= sh_degree <= 3:
        raise SceneError(f"sh_degree must be 0..3, got {sh_degree}")
    rng = np.random.default_rng(seed)
    surfaces = _parts(rng, density)
    pts, nrm, tan, sigma, part = [], [], [], [], []
    for part_index, name in enumerate(PART_NAMES):
        for p, n, t, spacing in surfaces[name]:
            pts.append(p)
            nrm.append(n)
            tan.append(t)
            sigma.append(np.full(len(p), 0.55 * spacing))
            part.append(np.full(len(p), part_index))
    means = np.concatenate(pts)
    normals = np.concatenate(nrm)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    part_labels = np.concatenate(part).astype(np.int64)
    m = len(means)
    tangent_sigma = np.concatenate(sigma)
    # flat discs: full size along the surface, thin along the normal (the third axis)
    scales = np.stack([tangent_sigma, tangent_sigma, NORMAL_SCALE_RATIO * tangent_sigma], 1)
    quats = frame_to_quat(np.concatenate(tan), normals)
    base = np.array([PART_COLORS[n] for n in PART_NAMES])[part_labels]
    colors = np.clip(base + rng.uniform(-0.04, 0.04, size=(m, 3)), 0.0, 1.0)
    sh = np.zeros((m, (sh_degree + 1) ** 2, 3))
    sh[:, 0] = (colors - 0.5) / SH_C0
    logit_opacities = rng.uniform(3.0, 5.0, size=m)
    scene = GaussianScene(
        means=torch.from_numpy(means).float(),
        quats=torch.from_numpy(quats).float(),
        log_scales=torch.from_numpy(np.log(scales)).float(),
        logit_opacities=torch.from_numpy(logit_opacities).float(),
        sh=torch.from_numpy(sh).float(),
    )
    object_labels = np.asarray(PART_TO_OBJECT, dtype=np.int64)[part_labels]
    return DemoScene(
        scene=scene,
        object_labels=torch.from_numpy(object_labels),
        part_labels=torch.from_numpy(part_labels),
        normals=torch.from_numpy(normals).float(),
    )


# ---------------------------------------------------------------------------------------------
# files: scene, cameras, renders and label maps


def write_demo_scene(
    out_dir: str | Path,
    *,
    num_views: int = 24,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    density: float = 1.0,
    engine: str = "auto",
) -> DemoScene:
    """Write the demo scene and its ground truth to ``out_dir``::

        scene.ply                      the splats (Inria format)
        sparse/0/{cameras,images,points3D}.txt   COLMAP text model of the orbit views
        transforms.json                the same views, nerfstudio format
        images/<stem>.png              RGB renders (white background)
        labels/objects/<stem>.png      per-pixel object index + 1 (0 = background)
        labels/parts/<stem>.png        per-pixel part index + 1 (0 = background)
        labels.npy, part_labels.npy    [N] int64 per-Gaussian object / part index
        names.json                     {"objects": [...], "parts": [...], "part_to_object"}

    A label map pixel is the argmax of the rendered one-hot labels where the rendered alpha
    exceeds 0.5, else 0. Label PNGs are 8-bit (16-bit if there were more than 255 labels).
    """
    from gsbp_ros.raster import compute_view_weights, render_rgb
    from gsbp_ros.scene_io import save_scene

    out = Path(out_dir)
    demo = make_demo_scene(seed=seed, density=density)
    cameras = demo.cameras(num_views=num_views, width=width, height=height)
    save_scene(demo.scene, out / "scene.ply")
    save_colmap_text(cameras, out / "sparse" / "0")
    save_transforms_json(cameras, out / "transforms.json", image_prefix="images/")
    n_obj = len(demo.object_names)
    onehot = torch.cat(
        [
            torch.nn.functional.one_hot(demo.object_labels, n_obj),
            torch.nn.functional.one_hot(demo.part_labels, len(demo.part_names)),
        ],
        dim=1,
    ).float()
    for cam in cameras:
        weights = compute_view_weights(demo.scene, cam, engine=engine)
        rgb = render_rgb(demo.scene, cam, weights=weights, background=(1.0, 1.0, 1.0))
        _write_png(out / "images" / f"{cam.stem}.png", (rgb * 255).round().to(torch.uint8))
        rendered = weights.render(onehot.to(weights.device)).cpu()
        covered = weights.alpha().cpu() > 0.5
        for sub, block in (("objects", rendered[..., :n_obj]), ("parts", rendered[..., n_obj:])):
            labels = torch.where(covered, block.argmax(dim=-1) + 1, 0)
            _write_png(out / "labels" / sub / f"{cam.stem}.png", labels)
    for name, arr in (("labels.npy", demo.object_labels), ("part_labels.npy", demo.part_labels)):
        with atomic_write(out / name, "wb") as f:
            np.save(f, arr.numpy())
    names = {
        "objects": demo.object_names,
        "parts": demo.part_names,
        "part_to_object": demo.part_to_object,
    }
    with atomic_write(out / "names.json", "w") as f:
        json.dump(names, f, indent=2)
        f.write("\n")
    return demo


def _write_png(path: Path, image: Tensor) -> None:
    """[H, W, 3] uint8 RGB, or [H, W] integer labels (8-bit if they fit, else 16-bit)."""
    from PIL import Image

    arr = image.cpu().numpy()
    if arr.ndim == 2:
        if arr.min() < 0 or arr.max() > 65535:
            raise SceneError(f"label values must be 0..65535 for a PNG, got {arr.max()}")
        arr = arr.astype(np.uint8 if arr.max() < 256 else np.uint16)
    with atomic_write(path, "wb") as f:
        Image.fromarray(arr).save(f, format="PNG")
