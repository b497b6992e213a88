"""Camera sets: reading every supported camera file, generated orbit views, frame transforms.

Formats (each in its own module; every camera keeps its own intrinsics and size):

- COLMAP ``sparse/0`` (binary or text): :mod:`gsbp_ros.cameras_colmap`.
- nerfstudio ``transforms.json`` and NeRF-synthetic / Blender ``transforms_*.json``:
  :mod:`gsbp_ros.cameras_nerf` (also nerfstudio's ``dataparser_transforms.json``).
- Inria 3DGS ``cameras.json``: :mod:`gsbp_ros.cameras_inria`.

World frame
-----------
Cameras are returned in the world frame of the file they come from, and that frame must be
the scene's: every :class:`~gsbp_ros.camera.Camera` holds ``world_to_cam`` in OpenCV camera
axes (x right, y down, z forward). :mod:`gsbp_ros.captures` knows which frames a training
output's files are in (e.g. a splatfacto export next to its ``dataparser_transforms.json``).

gsplat checkpoints trained with ``normalize_world_space=True``
--------------------------------------------------------------
gsplat's ``simple_trainer`` (default) moves the COLMAP world into a normalised frame before
training: its ``Parser`` computes a 4x4 similarity ``parser.transform`` (recentre, rotate
z-up, scale to unit camera distance, align principal axes) and applies it to the poses and
points, so the checkpoint's splats live in that normalised frame while ``sparse/0`` still
holds the original poses. The checkpoint does not record the transform, so the loader cannot
undo it; pass it in::

    from datasets.colmap import Parser          # gsplat/examples
    T = Parser(data_dir, normalize=True).transform           # [4, 4] numpy
    cameras = load_cameras(f"{data_dir}/sparse/0", world_transform=T)

``world_transform`` maps old world points to new ones (``x_new = T @ x_old``, T = [sR | t]);
camera-to-world poses become ``T @ c2w`` with the scale divided out of the rotation, exactly
as gsplat's ``transform_cameras`` does, so images and intrinsics are unchanged.
:func:`visible_fraction` tells how much of a scene a camera set sees; a value near zero
usually means the scene and the cameras are in different frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.cameras_colmap import (
    COLMAP_MODELS,
    find_colmap_model,
    load_colmap,
    save_colmap_binary,
    save_colmap_text,
)
from gsbp_ros.cameras_inria import load_inria_cameras
from gsbp_ros.cameras_nerf import TransformsFile, read_transforms_json, save_transforms_json
from gsbp_ros.errors import CameraError
from gsbp_ros.jsonio import read_json
from gsbp_ros.poses import (
    as_similarity,
    quat_to_rotmat,
    rigid_inverse,
    rotmat_to_quat,
    transform_pose,
)

__all__ = [
    "COLMAP_MODELS",
    "CameraFile",
    "CameraSet",
    "cameras_for_scene",
    "estimate_up",
    "find_camera_file",
    "load_cameras",
    "look_at",
    "orbit_cameras",
    "project",
    "quat_to_rotmat",
    "read_cameras",
    "rotmat_to_quat",
    "save_cameras_json",
    "save_colmap_binary",
    "save_colmap_text",
    "save_transforms_json",
    "transform_cameras",
    "visible_fraction",
]

save_cameras_json = save_transforms_json  # the name docs/architecture.md uses

#: What each format is called in messages.
FORMAT_NAMES = {
    "colmap": "COLMAP model",
    "nerfstudio": "nerfstudio transforms.json",
    "blender": "NeRF-synthetic/Blender transforms",
    "inria": "Inria 3DGS cameras.json",
}


# ---------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class CameraFile:
    """A camera file found on disk: ``path`` is a COLMAP model folder or a JSON file."""

    path: Path
    format: str  # a key of FORMAT_NAMES

    def describe(self) -> str:
        return f"{self.path} ({FORMAT_NAMES[self.format]})"


@dataclass
class CameraSet:
    """The cameras of one file, with what is known about the file's frame.

    Attributes:
        cameras: sorted by name.
        source: where they came from.
        transforms: the parsed transforms JSON (nerfstudio/Blender), for its
            ``applied_transform``; None for other formats.
    """

    cameras: list[Camera]
    source: CameraFile
    transforms: TransformsFile | None = None


def find_camera_files(folder: str | Path) -> list[CameraFile]:
    """Every camera file directly in ``folder`` (a COLMAP model also in sparse/0 or sparse)."""
    folder = Path(folder)
    found = []
    model = find_colmap_model(folder)
    if model is not None:
        found.append(CameraFile(model, "colmap"))
    for name, fmt in (
        ("transforms.json", "nerfstudio"),
        ("transforms_train.json", "blender"),
        ("cameras.json", "inria"),
    ):
        if (folder / name).is_file():
            found.append(CameraFile(folder / name, fmt))
    return found


def find_camera_file(folder: str | Path) -> CameraFile | None:
    """The one camera file in ``folder``, None if there is none; CameraError if several.

    A NeRF-synthetic folder holds ``transforms_train.json`` beside ``_val`` and ``_test``:
    the training split is taken (the splats were trained on it).
    """
    folder = Path(folder)
    found = find_camera_files(folder)
    if len(found) > 1:
        names = ", ".join(f.describe() for f in found)
        raise CameraError(
            f"{folder}: several camera files: {names}; pass the one the scene was trained "
            "with as the cameras path (node: cameras_path, CLI: --cameras)"
        )
    if not found:
        others = sorted(p.name for p in folder.glob("transforms_*.json"))
        if others:
            raise CameraError(
                f"{folder}: no transforms.json or transforms_train.json, only "
                f"{', '.join(others)}; pass one of them as the cameras path"
            )
        return None
    return found[0]


def read_cameras(path: str | Path) -> CameraSet:
    """Read a camera file or find the one in a folder (see :func:`load_cameras`)."""
    path = Path(path)
    if not path.exists():
        raise CameraError(f"{path}: camera file or folder not found")
    if path.is_dir():
        source = find_camera_file(path)
        if source is None:
            raise CameraError(
                f"{path}: no COLMAP model (cameras.bin/images.bin or .txt in the folder, "
                "sparse/0 or sparse), no transforms.json, transforms_train.json or "
                "cameras.json found"
            )
        meta = None
    elif path.suffix.lower() == ".json":
        meta = read_json(path, error=CameraError, what="camera file")
        source = CameraFile(path, _json_format(path, meta))
    else:
        raise CameraError(
            f"{path}: expected a COLMAP model folder or a .json camera file "
            "(transforms.json, transforms_train.json, cameras.json)"
        )
    transforms = None
    if source.format == "colmap":
        cameras = load_colmap(source.path)
    elif source.format == "inria":
        cameras = load_inria_cameras(source.path, meta)
    else:
        transforms = read_transforms_json(source.path, meta)
        cameras = transforms.cameras
    if not cameras:
        raise CameraError(f"{source.path}: the camera file lists no images")
    return CameraSet(sorted(cameras, key=lambda c: c.name), source, transforms)


def _json_format(path: Path, meta: Any) -> str:
    if isinstance(meta, list):
        return "inria"
    if isinstance(meta, dict) and isinstance(meta.get("frames"), list):
        blender = "camera_angle_x" in meta and "fl_x" not in meta
        return "blender" if blender else "nerfstudio"
    raise CameraError(
        f"{path}: expected a JSON object with a 'frames' list (transforms.json) or a list "
        "of cameras (Inria cameras.json)"
    )


def load_cameras(path: str | Path, *, world_transform: Any = None) -> list[Camera]:
    """Load every camera of a camera file, sorted by name.

    Args:
        path: a COLMAP model folder holding ``cameras.bin``/``images.bin`` (or ``.txt``), a
            folder with ``sparse/0`` or ``sparse`` below it, a nerfstudio ``transforms.json``,
            a NeRF-synthetic ``transforms_train.json``, an Inria ``cameras.json``, or a folder
            holding exactly one of those (several: CameraError naming them).
        world_transform: optional [4, 4] similarity (rotation, uniform scale, translation)
            applied to every pose, e.g. gsplat's ``parser.transform`` for checkpoints trained
            with ``normalize_world_space=True`` (see the module docstring).

    Returns:
        Cameras with their own intrinsics and image sizes, sorted by ``name``.
    """
    cameras = read_cameras(path).cameras
    if world_transform is not None:
        cameras = transform_cameras(cameras, world_transform)
    return cameras


def transform_cameras(cameras: Sequence[Camera], world_transform: Any) -> list[Camera]:
    """Move cameras into a new world frame: ``x_new = T @ x_old``.

    Args:
        world_transform: [4, 4] similarity ``[s R | t]`` (s > 0, R a rotation).
    """
    T, scale = as_similarity(world_transform)
    out = []
    for cam in cameras:
        c2w = transform_pose(np.linalg.inv(cam.world_to_cam.double().numpy()), T, scale)
        out.append(
            Camera(cam.name, cam.K, torch.from_numpy(rigid_inverse(c2w)), cam.width, cam.height)
        )
    return out


# ---------------------------------------------------------------------------------------------
# generated views


def orbit_cameras(
    center: Any,
    radius: float | None = None,
    *,
    num_views: int = 24,
    width: int = 256,
    height: int = 256,
    fov_deg: float = 60.0,
    elevations_deg: Sequence[float] = (20.0, 45.0),
    up: Sequence[float] | None = None,
    azimuth_offset_deg: float = 0.0,
    name_format: str = "orbit_{:03d}.png",
) -> list[Camera]:
    """Cameras on rings around ``center``, all looking at it.

    View i sits on ring ``i % len(elevations_deg)`` at azimuth ``360 * i / num_views`` degrees
    (plus ``azimuth_offset_deg``), at distance ``radius`` from ``center``; ``up`` is the world
    up direction. ``fov_deg`` is the horizontal field of view; pixels are square and the
    principal point is the image centre, so ``center`` projects to (width/2, height/2).

    Args:
        center: [3] point to look at, or a :class:`~gsbp_ros.scene.GaussianScene` (then
            :func:`cameras_for_scene` picks centre, radius and, unless given, the up axis).
        radius: distance from ``center``.
        up: [3] world up; None: +z around a point, :func:`estimate_up` around a scene.

    Returns:
        ``num_views`` cameras named ``orbit_000.png``, ``orbit_001.png``, ...
    """
    from gsbp_ros.scene import GaussianScene

    kwargs = dict(
        num_views=num_views,
        width=width,
        height=height,
        fov_deg=fov_deg,
        elevations_deg=elevations_deg,
        up=up,
        azimuth_offset_deg=azimuth_offset_deg,
        name_format=name_format,
    )
    if isinstance(center, GaussianScene):
        return cameras_for_scene(center, radius=radius, **kwargs)
    if radius is None or not radius > 0 or not math.isfinite(radius):
        raise CameraError(f"orbit radius must be a positive number, got {radius}")
    if num_views < 1:
        raise CameraError(f"num_views must be at least 1, got {num_views}")
    if not 0 < fov_deg < 180:
        raise CameraError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if not elevations_deg or any(not -90 < e < 90 for e in elevations_deg):
        raise CameraError(f"elevations_deg must lie in (-90, 90), got {list(elevations_deg)}")
    c = np.asarray(torch.as_tensor(center, dtype=torch.float64).cpu(), dtype=np.float64)
    u = np.asarray((0.0, 0.0, 1.0) if up is None else up, dtype=np.float64)
    if c.shape != (3,) or u.shape != (3,) or np.linalg.norm(u) == 0:
        raise CameraError("center and up must be 3-vectors, up non-zero")
    u = u / np.linalg.norm(u)
    # any two unit vectors completing `up` to an orthonormal basis
    e1 = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    cameras = []
    for i in range(num_views):
        el = math.radians(elevations_deg[i % len(elevations_deg)])
        az = 2 * math.pi * i / num_views + math.radians(azimuth_offset_deg)
        direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * u
        eye = c + radius * direction
        w2c = look_at(eye, c, u)
        cameras.append(
            Camera(name_format.format(i), torch.from_numpy(K), torch.from_numpy(w2c), width, height)
        )
    return cameras


def cameras_for_scene(
    scene: Any,
    *,
    radius: float | None = None,
    margin: float = 1.1,
    quantile: float = 0.01,
    up: Sequence[float] | None = None,
    cameras: Sequence[Camera] | None = None,
    **kwargs: Any,
) -> list[Camera]:
    """:func:`orbit_cameras` around a scene: centre of ``scene.bounds(quantile)``, radius so
    that the bounding sphere fits in the narrower field of view (times ``margin``), up axis
    ``up`` or else :func:`estimate_up` (from ``cameras``, the views the scene came with, if
    any).

    ``kwargs`` go to :func:`orbit_cameras` (num_views, width, height, fov_deg, ...).
    """
    lo, hi = scene.bounds(quantile=quantile)
    lo, hi = lo.double().cpu().numpy(), hi.double().cpu().numpy()
    center = (lo + hi) / 2
    if radius is None:
        sphere = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-6)
        width, height = kwargs.get("width", 256), kwargs.get("height", 256)
        half_fov_x = math.radians(kwargs.get("fov_deg", 60.0)) / 2
        half_fov_y = math.atan(math.tan(half_fov_x) * height / width)
        radius = margin * sphere / math.sin(min(half_fov_x, half_fov_y))
    if up is None:
        up = estimate_up(scene, cameras)
    return orbit_cameras(center, radius, up=up, **kwargs)


def estimate_up(
    scene: Any,
    cameras: Sequence[Camera] | None = None,
    *,
    max_points: int = 200_000,
    snap_deg: float = 5.0,
) -> np.ndarray:
    """[3] unit world "up" of a scene, for generated views.

    - With ``cameras`` (the views the scene was captured with): the mean of their image-up
      directions (people hold cameras upright more or less).
    - Without: the scene's axis of least spread (the floor or table top dominates a capture;
      its normal is that axis), from the central 90% of the Gaussian centres around their
      median, so distant floaters do not tilt it, then refined to the normal of the plane
      that holds the most points (the support itself; RANSAC with a fixed seed). Its sign
      points to where the scene's long tail is (objects stand on the support, so mass is
      skewed upward); when the skew is too weak to tell, the axis's largest coordinate is
      made positive.

    A result within ``snap_deg`` of a coordinate axis is snapped onto it, so z-up and y-up
    worlds get exactly their axis.
    """
    if cameras:
        ups = np.stack([-c.cam_to_world[:3, 1].double().numpy() for c in cameras])
        mean = ups.mean(axis=0)
        if np.linalg.norm(mean) > 0.1:  # cameras rolled every which way say nothing
            return _snap(mean / np.linalg.norm(mean), snap_deg)
    means = scene.means.detach().cpu().double()
    if means.shape[0] > max_points:
        means = means[torch.linspace(0, means.shape[0] - 1, max_points).long()]
    pts = means.numpy()
    dist = np.linalg.norm(pts - np.median(pts, axis=0), axis=1)
    pts = pts[dist <= np.quantile(dist, 0.9)]
    if pts.shape[0] < 3:
        return np.array([0.0, 0.0, 1.0])
    centred = pts - pts.mean(axis=0)
    axis = _least_spread_axis(centred)
    axis = _refine_to_dominant_plane(centred, axis)
    proj = centred @ axis
    var = float(np.mean(proj**2))
    skew = float(np.mean(proj**3)) / var**1.5 if var > 0 else 0.0
    sign = np.sign(skew) if abs(skew) > 0.2 else np.sign(axis[np.argmax(np.abs(axis))])
    return _snap(axis * (sign or 1.0), snap_deg)


def _least_spread_axis(centred: np.ndarray) -> np.ndarray:
    _, vecs = np.linalg.eigh(centred.T @ centred / len(centred))
    return vecs[:, 0]


def _refine_to_dominant_plane(centred: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The normal of the plane that holds the most points (the floor or table top itself),
    by RANSAC with a fixed seed: objects standing on a support tilt the whole cloud's axis
    by degrees, the support alone does not. Kept only when the plane holds >= 5% of the
    points and its normal lies within 30 degrees of ``axis``."""
    n = len(centred)
    if n < 10:
        return axis
    rng = np.random.default_rng(0)
    sample = centred[rng.choice(n, size=min(n, 20_000), replace=False)]
    extent = float(np.quantile(np.linalg.norm(sample, axis=1), 0.9))
    tol = 0.005 * extent
    best, best_count = axis, 0
    cos_limit = math.cos(math.radians(30.0))
    for _ in range(300):
        a, b, c = sample[rng.choice(len(sample), size=3, replace=False)]
        normal = np.cross(b - a, c - a)
        length = np.linalg.norm(normal)
        if length < 1e-12:
            continue
        normal /= length
        if abs(normal @ axis) < cos_limit:
            continue
        count = int((np.abs((sample - a) @ normal) <= tol).sum())
        if count > best_count:
            best, best_count = normal, count
    if best_count < 0.05 * len(sample):
        return axis
    # least squares on the inliers of the best plane
    offset = float(np.median(sample @ best))
    inliers = sample[np.abs(sample @ best - offset) <= tol]
    refined = _least_spread_axis(inliers - inliers.mean(axis=0))
    refined = refined if refined @ axis > 0 else -refined
    return refined if refined @ axis >= cos_limit else axis


def _snap(u: np.ndarray, snap_deg: float) -> np.ndarray:
    i = int(np.argmax(np.abs(u)))
    if abs(u[i]) >= math.cos(math.radians(snap_deg)):
        out = np.zeros(3)
        out[i] = np.sign(u[i])
        return out
    return u


def pick_view(cameras: Sequence[Camera], view: str) -> Camera:
    """The camera a user names: an index (``"3"``), an image name or its stem."""
    if view.isdigit():
        i = int(view)
        if i >= len(cameras):
            raise CameraError(f"view index {i} is out of range (there are {len(cameras)} views)")
        return cameras[i]
    for c in cameras:
        if view in (c.name, c.stem):
            return c
    examples = ", ".join(c.stem for c in cameras[:5])
    raise CameraError(f"no view named {view!r}; e.g. {examples}")


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> np.ndarray:
    """[4, 4] float64 world-to-camera (OpenCV axes) for a camera at ``eye`` facing ``target``
    with ``up`` pointing up in the image."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) == 0:
        raise CameraError("look_at: eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise CameraError("look_at: viewing direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = eye
    return rigid_inverse(c2w)


def visible_fraction(
    scene: Any, cameras: Sequence[Camera], *, max_points: int = 20000, near: float = 0.01
) -> float:
    """Fraction of the scene's Gaussian centres (a fixed subsample) that project inside at
    least one camera's image, in front of it. Near zero: scene and cameras are probably in
    different world frames (e.g. a normalised gsplat checkpoint with raw COLMAP poses)."""
    means = scene.means.detach().cpu().double()
    if means.shape[0] > max_points:
        means = means[torch.linspace(0, means.shape[0] - 1, max_points).long()]
    seen = torch.zeros(means.shape[0], dtype=torch.bool)
    for cam in cameras:
        uv, z = project(cam, means)
        inside = (z > near) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width)
        inside &= (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        seen |= inside
    return float(seen.double().mean())


def project(camera: Camera, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points. points: [M, 3] -> (uv [M, 2] continuous pixel coordinates,
    with pixel (u, v) covering [u, u+1) x [v, v+1); depth z [M])."""
    w2c = camera.world_to_cam.to(points)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    uvw = cam @ camera.K.to(points).T
    return uvw[:, :2] / uvw[:, 2:3], z
