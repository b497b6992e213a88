"""COLMAP sparse models (``cameras``/``images`` ``.bin`` or ``.txt``): reading and writing.

``images.bin``/``images.txt`` store ``QW QX QY QZ TX TY TZ`` = world-to-camera in OpenCV
axes (x right, y down, z forward); they are used as they are. Each image keeps its own
camera's intrinsics and size. Distortion parameters (SIMPLE_RADIAL, OPENCV, ...) are ignored
with one warning per model: render-and-back-project views are ideal pinhole views, so
undistort real photographs first (``colmap image_undistorter``) to match them pixel for pixel.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.poses import quat_to_rotmat, rotmat_to_quat

log = logging.getLogger(__name__)

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


def find_colmap_model(folder: Path) -> Path | None:
    """The COLMAP model in ``folder``, ``folder/sparse/0`` or ``folder/sparse`` (first found),
    or None; a model missing half of its files is an error."""
    for cand in (folder, folder / "sparse" / "0", folder / "sparse"):
        has_cams = any((cand / f"cameras{s}").is_file() for s in (".bin", ".txt"))
        has_imgs = any((cand / f"images{s}").is_file() for s in (".bin", ".txt"))
        if has_cams and has_imgs:
            return cand
        if has_cams or has_imgs:
            missing = "images" if has_cams else "cameras"
            raise CameraError(f"{cand}: COLMAP model lacks {missing}.bin / {missing}.txt")
    return None


def load_colmap(folder: Path) -> list[Camera]:
    """Every image of the COLMAP model in ``folder`` as a Camera (unsorted)."""
    cams_bin, imgs_bin = folder / "cameras.bin", folder / "images.bin"
    intrinsics = _read_cameras_bin(cams_bin) if cams_bin.is_file() else _read_cameras_txt(folder)
    images = _read_images_bin(imgs_bin) if imgs_bin.is_file() else _read_images_txt(folder)
    _warn_distortion(folder, intrinsics)
    cameras = []
    for name, qvec, tvec, cam_id in images:
        if cam_id not in intrinsics:
            raise CameraError(f"{folder}: image {name!r} refers to unknown camera id {cam_id}")
        model, width, height, params = intrinsics[cam_id]
        if not (np.all(np.isfinite(qvec)) and np.linalg.norm(qvec) > 0):
            raise CameraError(f"{folder}: image {name!r} has an invalid rotation {qvec.tolist()}")
        w2c = np.eye(4)
        w2c[:3, :3] = quat_to_rotmat(qvec)
        w2c[:3, 3] = tvec
        K = _colmap_K(model, params)
        try:
            cam = Camera(name, torch.from_numpy(K), torch.from_numpy(w2c), width, height)
        except CameraError as exc:
            raise CameraError(f"{folder}: {exc}") from None
        cameras.append(cam)
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


# -- writing ---------------------------------------------------------------------------------


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
        fx, fy, cx, cy = cam.pinhole()
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
            struct.pack("<iiQQ4d", i, _MODEL_IDS["PINHOLE"], cam.width, cam.height, *cam.pinhole())
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


def _check_name(cam: Camera) -> None:
    if not cam.name or any(c in cam.name for c in "\n\r\0"):
        raise CameraError(f"camera name {cam.name!r} cannot be stored in a COLMAP model")


def _pose_qt(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    w2c = cam.world_to_cam.double().numpy()
    return rotmat_to_quat(w2c[:3, :3]), w2c[:3, 3].copy()
