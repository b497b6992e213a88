"""Camera sets: COLMAP models, nerfstudio ``transforms.json``, generated orbits.

World frame
-----------
Cameras are returned in the world frame of the file they come from, and that frame must be
the scene's: every :class:`~gsbp_ros.camera.Camera` holds ``world_to_cam`` in OpenCV camera
axes (x right, y down, z forward).

- COLMAP ``images.bin``/``images.txt`` store ``QW QX QY QZ TX TY TZ`` = world-to-camera in
  OpenCV axes; used as they are. Each image keeps its own camera's intrinsics and size.
  Distortion parameters (SIMPLE_RADIAL, OPENCV, ...) are ignored with one warning per model:
  render-and-back-project views are ideal pinhole views, so undistort real photographs first
  (``colmap image_undistorter``) if they are to be matched pixel for pixel.
- nerfstudio ``transform_matrix`` is camera-to-world in OpenGL camera axes (x right, y up,
  z backward); the y and z camera axes are flipped to get OpenCV. The poses are used in the
  JSON's own world frame (nerfstudio's ``applied_transform`` and any dataparser scaling are
  not undone).

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

import json
import logging
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError
from gsbp_ros.fileio import atomic_write

log = logging.getLogger(__name__)

# COLMAP camera models: id -> (name, number of params). The first params are the pinhole
# part: (f, cx, cy) for the SIMPLE_* / RADIAL* models, (fx, fy, cx, cy) for the others.
COLMAP_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_MODEL_IDS = {name: mid for mid, (name, _) in COLMAP_MODELS.items()}
_SINGLE_FOCAL = {
    "SIMPLE_PINHOLE",
    "SIMPLE_RADIAL",
    "RADIAL",
    "SIMPLE_RADIAL_FISHEYE",
    "RADIAL_FISHEYE",
}
_UNDISTORTED = {"SIMPLE_PINHOLE", "PINHOLE"}

# OpenGL camera axes (y up, z backward) -> OpenCV (y down, z forward), and back.
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# loading


def load_cameras(path: str | Path, *, world_transform: Any = None) -> list[Camera]:
    """Load every camera of a COLMAP model or a nerfstudio ``transforms.json``, sorted by name.

    Args:
        path: a COLMAP model folder holding ``cameras.bin``/``images.bin`` (or ``.txt``), or a
            scene folder with ``sparse/0`` or ``sparse`` below it, or a ``.json`` file, or a
            folder holding ``transforms.json``.
        world_transform: optional [4, 4] similarity (rotation, uniform scale, translation)
            applied to every pose, e.g. gsplat's ``parser.transform`` for checkpoints trained
            with ``normalize_world_space=True`` (see the module docstring).

    Returns:
        Cameras with their own intrinsics and image sizes, sorted by ``name``.
    """
    path = Path(path)
    if not path.exists():
        raise CameraError(f"{path}: camera file or folder not found")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise CameraError(f"{path}: expected a COLMAP model folder or a transforms.json file")
        cameras = _load_transforms_json(path)
    else:
        model = _find_colmap_model(path)
        if model is not None:
            cameras = _load_colmap(model)
        elif (path / "transforms.json").is_file():
            cameras = _load_transforms_json(path / "transforms.json")
        else:
            raise CameraError(
                f"{path}: no COLMAP model (cameras.bin/images.bin or .txt in the folder, "
                f"sparse/0 or sparse) and no transforms.json found"
            )
    if not cameras:
        raise CameraError(f"{path}: the camera file lists no images")
    if world_transform is not None:
        cameras = transform_cameras(cameras, world_transform)
    return sorted(cameras, key=lambda c: c.name)


def transform_cameras(cameras: Sequence[Camera], world_transform: Any) -> list[Camera]:
    """Move cameras into a new world frame: ``x_new = T @ x_old``.

    Args:
        world_transform: [4, 4] similarity ``[s R | t]`` (s > 0, R a rotation).
    """
    T = np.asarray(
        world_transform.detach().cpu() if isinstance(world_transform, Tensor) else world_transform,
        dtype=np.float64,
    )
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise CameraError(f"world_transform must be a finite 4x4 matrix, got shape {T.shape}")
    if not np.allclose(T[3], [0, 0, 0, 1]):
        raise CameraError("world_transform's last row must be [0, 0, 0, 1]")
    det = np.linalg.det(T[:3, :3])
    if det <= 0:
        raise CameraError("world_transform must keep orientation (positive determinant)")
    scale = det ** (1.0 / 3.0)
    R = T[:3, :3] / scale
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
        raise CameraError("world_transform is not a similarity (rotation x uniform scale)")
    out = []
    for cam in cameras:
        c2w = T @ np.linalg.inv(cam.world_to_cam.double().numpy())
        c2w[:3, :3] /= scale  # the camera frame stays orthonormal; only distances scale
        out.append(_with_pose(cam, _rigid_inverse(c2w)))
    return out


def _with_pose(cam: Camera, world_to_cam: np.ndarray) -> Camera:
    return Camera(cam.name, cam.K, torch.from_numpy(world_to_cam), cam.width, cam.height)


def _find_colmap_model(folder: Path) -> Path | None:
    for cand in (folder, folder / "sparse" / "0", folder / "sparse"):
        has_cams = any((cand / f"cameras{s}").is_file() for s in (".bin", ".txt"))
        has_imgs = any((cand / f"images{s}").is_file() for s in (".bin", ".txt"))
        if has_cams and has_imgs:
            return cand
        if has_cams or has_imgs:
            missing = "images" if has_cams else "cameras"
            raise CameraError(f"{cand}: COLMAP model lacks {missing}.bin / {missing}.txt")
    return None


def _load_colmap(folder: Path) -> list[Camera]:
    cams_bin, imgs_bin = folder / "cameras.bin", folder / "images.bin"
    intrinsics = _read_cameras_bin(cams_bin) if cams_bin.is_file() else _read_cameras_txt(folder)
    images = _read_images_bin(imgs_bin) if imgs_bin.is_file() else _read_images_txt(folder)
    _warn_distortion(folder, intrinsics)
    cameras = []
    for name, qvec, tvec, cam_id in images:
        if cam_id not in intrinsics:
            raise CameraError(f"{folder}: image {name!r} refers to unknown camera id {cam_id}")
        model, width, height, params = intrinsics[cam_id]
        w2c = np.eye(4)
        w2c[:3, :3] = quat_to_rotmat(qvec)
        w2c[:3, 3] = tvec
        K = _colmap_K(model, params)
        cameras.append(Camera(name, torch.from_numpy(K), torch.from_numpy(w2c), width, height))
    return cameras


def _colmap_K(model: str, params: Sequence[float]) -> np.ndarray:
    if model in _SINGLE_FOCAL:
        f, cx, cy = params[:3]
        fx = fy = f
    else:
        fx, fy, cx, cy = params[:4]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _warn_distortion(folder: Path, intrinsics: dict) -> None:
    counts: dict[str, int] = {}
    for model, *_ in intrinsics.values():
        if model not in _UNDISTORTED:
            counts[model] = counts.get(model, 0) + 1
    for model, n in sorted(counts.items()):
        log.warning(
            "%s: %d camera(s) use the %s model; their distortion parameters are ignored "
            "(views are treated as ideal pinhole cameras; undistort the images first, "
            "e.g. with colmap image_undistorter)",
            folder,
            n,
            model,
        )


# -- COLMAP binary ----------------------------------------------------------------------------


class _Reader:
    """Little-endian struct reader that turns a short read into a CameraError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise CameraError(
                f"{self.path}: truncated COLMAP binary file ({len(self.data)} bytes, "
                f"needed more at byte {self.pos})"
            )
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise CameraError(
                f"{self.path}: truncated COLMAP binary file ({len(self.data)} bytes, "
                f"needed {self.pos + size})"
            )
        self.pos += size

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise CameraError(f"{self.path}: truncated COLMAP binary file (unterminated name)")
        s = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def _read_cameras_bin(path: Path) -> dict[int, tuple[str, int, int, tuple[float, ...]]]:
    r = _Reader(path)
    (num,) = r.read("Q")
    out = {}
    for _ in range(num):
        cam_id, model_id, width, height = r.read("iiQQ")
        if model_id not in COLMAP_MODELS:
            raise CameraError(
                f"{path}: camera {cam_id} has unknown COLMAP model id {model_id} "
                f"(known: 0..{max(COLMAP_MODELS)})"
            )
        model, nparams = COLMAP_MODELS[model_id]
        params = r.read("d" * nparams)
        out[cam_id] = (model, int(width), int(height), params)
    return out


def _read_images_bin(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    r = _Reader(path)
    (num,) = r.read("Q")
    out = []
    for _ in range(num):
        _image_id, *qt, cam_id = r.read("i7di")
        name = r.cstring()
        (num_points,) = r.read("Q")
        r.skip(24 * num_points)  # (double x, double y, int64 point3D_id) each
        out.append((name, np.array(qt[:4]), np.array(qt[4:]), cam_id))
    return out


# -- COLMAP text ------------------------------------------------------------------------------


def _data_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CameraError(f"{path}: file not found")
    return path.read_text().splitlines()


def _read_cameras_txt(folder: Path) -> dict[int, tuple[str, int, int, tuple[float, ...]]]:
    path = folder / "cameras.txt"
    out = {}
    for lineno, line in enumerate(_data_lines(path), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            cam_id, model, width, height = int(words[0]), words[1], int(words[2]), int(words[3])
            params = tuple(float(w) for w in words[4:])
        except (ValueError, IndexError):
            raise CameraError(f"{path}:{lineno}: malformed camera line {line.strip()!r}") from None
        if model not in _MODEL_IDS:
            raise CameraError(f"{path}:{lineno}: unknown COLMAP camera model {model!r}")
        nparams = COLMAP_MODELS[_MODEL_IDS[model]][1]
        if len(params) != nparams:
            raise CameraError(
                f"{path}:{lineno}: {model} needs {nparams} parameters, got {len(params)}"
            )
        out[cam_id] = (model, width, height, params)
    return out


def _read_images_txt(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    path = folder / "images.txt"
    lines = _data_lines(path)
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        words = line.split()
        i += 1
        if not words or words[0].startswith("#"):
            continue
        # the next line (possibly empty) lists the image's 2D points: skip it unread
        i += 1
        try:
            qt = [float(w) for w in words[1:8]]
            cam_id = int(words[8])
            name = " ".join(words[9:])
        except (ValueError, IndexError):
            raise CameraError(f"{path}:{i - 1}: malformed image line {line.strip()!r}") from None
        if len(qt) != 7 or not name:
            raise CameraError(f"{path}:{i - 1}: malformed image line {line.strip()!r}")
        out.append((name, np.array(qt[:4]), np.array(qt[4:]), cam_id))
    return out


# -- nerfstudio transforms.json -----------------------------------------------------------


_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _load_transforms_json(path: Path) -> list[Camera]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CameraError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise CameraError(f"{path}: expected a JSON object with a 'frames' list")
    model = str(meta.get("camera_model", "OPENCV")).upper()
    if model in ("EQUIRECTANGULAR",):
        raise CameraError(f"{path}: camera_model {model} is not a pinhole camera")
    distorted = model != "PINHOLE" and any(
        float(meta.get(k, 0.0) or 0.0) != 0.0 for k in _DISTORTION_KEYS
    )
    cameras = []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise CameraError(f"{path}: frame {i} is not a JSON object")
        cameras.append(_frame_camera(path, i, meta, frame))
        distorted = distorted or any(
            float(frame.get(k, 0.0) or 0.0) != 0.0 for k in _DISTORTION_KEYS
        )
    if distorted or "FISHEYE" in model:
        log.warning(
            "%s: camera_model %s with distortion parameters; distortion is ignored "
            "(views are treated as ideal pinhole cameras)",
            path,
            model,
        )
    return cameras


def _frame_camera(path: Path, i: int, meta: dict, frame: dict) -> Camera:
    def get(key: str) -> Any:
        return frame.get(key, meta.get(key))

    name = frame.get("file_path")
    if not isinstance(name, str) or not name:
        raise CameraError(f"{path}: frame {i} has no 'file_path'")
    name = name[2:] if name.startswith("./") else name
    values = {k: get(k) for k in _INTRINSIC_KEYS}
    # Blender-style files give a horizontal field of view instead of focal lengths
    angle = get("camera_angle_x")
    if values["fl_x"] is None and angle is not None and values["w"] is not None:
        values["fl_x"] = 0.5 * float(values["w"]) / math.tan(0.5 * float(angle))
    if values["fl_y"] is None:
        values["fl_y"] = values["fl_x"]
    if values["cx"] is None and values["w"] is not None:
        values["cx"] = 0.5 * float(values["w"])
    if values["cy"] is None and values["h"] is not None:
        values["cy"] = 0.5 * float(values["h"])
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise CameraError(
            f"{path}: frame {i} ({name}) lacks intrinsics {', '.join(missing)} "
            f"(give them per frame or at the top level)"
        )
    try:
        fx, fy, cx, cy = (float(values[k]) for k in ("fl_x", "fl_y", "cx", "cy"))
        width, height = int(values["w"]), int(values["h"])
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except KeyError:
        raise CameraError(f"{path}: frame {i} ({name}) has no 'transform_matrix'") from None
    except (TypeError, ValueError) as e:
        raise CameraError(f"{path}: frame {i} ({name}) has malformed values: {e}") from None
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
        raise CameraError(f"{path}: frame {i} ({name}) transform_matrix is not a finite 4x4")
    sv = np.linalg.svd(c2w[:3, :3], compute_uv=False)
    if np.abs(sv - 1.0).max() > 1e-2:
        raise CameraError(
            f"{path}: frame {i} ({name}) transform_matrix rotation is not orthonormal "
            f"(singular values {np.round(sv, 4).tolist()})"
        )
    c2w_cv = c2w @ _GL_TO_CV
    c2w_cv[:3, :3] = _nearest_rotation(c2w_cv[:3, :3])
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    try:
        return Camera(
            name, torch.from_numpy(K), torch.from_numpy(_rigid_inverse(c2w_cv)), width, height
        )
    except CameraError as e:
        raise CameraError(f"{path}: frame {i}: {e}") from None


# ---------------------------------------------------------------------------------------------
# writing


def save_colmap_text(cameras: Sequence[Camera], folder: str | Path) -> None:
    """Write ``cameras.txt``, ``images.txt`` and an empty ``points3D.txt`` (PINHOLE, one
    COLMAP camera per image). Values are written with full float64 precision."""
    folder = Path(folder)
    cams = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    imgs = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(cameras)}",
    ]
    for i, cam in enumerate(cameras, 1):
        _check_name(cam)
        fx, fy, cx, cy = _pinhole_params(cam)
        cams.append(f"{i} PINHOLE {cam.width} {cam.height} {fx!r} {fy!r} {cx!r} {cy!r}")
        q, t = _pose_qt(cam)
        imgs.append(" ".join([str(i), *(repr(float(v)) for v in (*q, *t)), str(i), cam.name]))
        imgs.append("")
    points = "# 3D point list with one line of data per point:\n# Number of points: 0\n"
    for name, text in (
        ("cameras.txt", "\n".join(cams) + "\n"),
        ("images.txt", "\n".join(imgs) + "\n"),
        ("points3D.txt", points),
    ):
        with atomic_write(folder / name, "w") as f:
            f.write(text)


def save_colmap_binary(cameras: Sequence[Camera], folder: str | Path) -> None:
    """Write ``cameras.bin``, ``images.bin`` and an empty ``points3D.bin`` (PINHOLE)."""
    folder = Path(folder)
    cams = [struct.pack("<Q", len(cameras))]
    imgs = [struct.pack("<Q", len(cameras))]
    for i, cam in enumerate(cameras, 1):
        _check_name(cam)
        cams.append(
            struct.pack(
                "<iiQQ4d", i, _MODEL_IDS["PINHOLE"], cam.width, cam.height, *_pinhole_params(cam)
            )
        )
        q, t = _pose_qt(cam)
        imgs.append(struct.pack("<i7di", i, *q, *t, i))
        imgs.append(cam.name.encode("utf-8") + b"\0")
        imgs.append(struct.pack("<Q", 0))
    for name, data in (
        ("cameras.bin", b"".join(cams)),
        ("images.bin", b"".join(imgs)),
        ("points3D.bin", struct.pack("<Q", 0)),
    ):
        with atomic_write(folder / name, "wb") as f:
            f.write(data)


def save_transforms_json(
    cameras: Sequence[Camera], path: str | Path, *, image_prefix: str = "images/"
) -> None:
    """Write a nerfstudio ``transforms.json`` with per-frame intrinsics.

    ``file_path`` is ``image_prefix + camera.name`` (nerfstudio paths are relative to the
    JSON file; pass ``image_prefix=""`` when the names already hold the folder).
    """
    frames = []
    for cam in cameras:
        fx, fy, cx, cy = _pinhole_params(cam)
        c2w = np.linalg.inv(cam.world_to_cam.double().numpy()) @ _GL_TO_CV
        frames.append(
            {
                "file_path": image_prefix + cam.name,
                "fl_x": fx,
                "fl_y": fy,
                "cx": cx,
                "cy": cy,
                "w": cam.width,
                "h": cam.height,
                "transform_matrix": c2w.tolist(),
            }
        )
    with atomic_write(path, "w") as f:
        json.dump({"camera_model": "OPENCV", "frames": frames}, f, indent=1)
        f.write("\n")


save_cameras_json = save_transforms_json  # the name docs/architecture.md uses


def _check_name(cam: Camera) -> None:
    if not cam.name or any(c in cam.name for c in "\n\r\0"):
        raise CameraError(f"camera name {cam.name!r} cannot be stored in a COLMAP model")


def _pinhole_params(cam: Camera) -> tuple[float, float, float, float]:
    K = cam.K.double()
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])


def _pose_qt(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    w2c = cam.world_to_cam.double().numpy()
    return rotmat_to_quat(w2c[:3, :3]), w2c[:3, 3].copy()


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
    up: Sequence[float] = (0.0, 0.0, 1.0),
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
            :func:`cameras_for_scene` picks centre and radius).
        radius: distance from ``center``.

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
    u = np.asarray(up, dtype=np.float64)
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
    **kwargs: Any,
) -> list[Camera]:
    """:func:`orbit_cameras` around a scene: centre of ``scene.bounds(quantile)``, radius so
    that the bounding sphere fits in the narrower field of view (times ``margin``).

    ``kwargs`` go to :func:`orbit_cameras` (num_views, width, height, fov_deg, up, ...).
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
    return orbit_cameras(center, radius, **kwargs)


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
    return _rigid_inverse(c2w)


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


# ---------------------------------------------------------------------------------------------
# small maths


def quat_to_rotmat(q: Any) -> np.ndarray:
    """[3, 3] rotation from a w x y z quaternion (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_quat(R: Any) -> np.ndarray:
    """[4] unit w x y z quaternion (w >= 0) of the rotation nearest to ``R`` [3, 3]."""
    R = _nearest_rotation(np.asarray(R, dtype=np.float64))
    # Shepperd: pivot on the largest of w, x, y, z for accuracy
    tr = np.trace(R)
    diag = [tr, R[0, 0], R[1, 1], R[2, 2]]
    k = int(np.argmax(diag))
    if k == 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif k == 1:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif k == 2:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def _nearest_rotation(R: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def _rigid_inverse(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out
