"""NeRF-style camera files: nerfstudio ``transforms.json``, NeRF-synthetic / Blender
``transforms_*.json`` and nerfstudio's ``dataparser_transforms.json``.

Conventions
-----------
- ``transform_matrix`` is camera-to-world in OpenGL camera axes (x right, y up, z backward);
  the y and z camera axes are flipped to get OpenCV. Poses are returned in the JSON's own
  world frame.
- Intrinsics (``fl_x fl_y cx cy w h``) may sit at the top level or in each frame. Blender
  files give ``camera_angle_x`` (horizontal field of view) and no size: the size is read from
  each frame's image file (``file_path`` relative to the JSON, usually without extension;
  ``.png`` is tried first), the principal point is the image centre and ``fy = fx``.
- nerfstudio's ``applied_transform`` (3x4) maps the original data frame (e.g. COLMAP's) to
  the frame the JSON's poses are stored in; ``applied_scale`` scales it.

Splatfacto exports
------------------
nerfstudio's dataparser moves the poses into a normalised frame before training and saves
``dataparser_transforms.json`` = ``{"transform": 3x4 T, "scale": s}``. ``T`` maps the
*original* data frame to the normalised one (nerfstudio folds ``applied_transform`` into it),
and ``ns-export gaussian-splat`` writes the splats in the normalised frame::

    p_splat = s * (T @ p_orig),      p_orig = applied_transform^-1 @ p_json

so cameras of the ``transforms.json`` land on the exported splat after
``s * T @ inv(applied_transform)`` (:func:`dataparser_camera_transform`). When the JSON has
an ``applied_scale``, nerfstudio multiplies it into ``s`` without applying it to the training
poses, so it is divided out again here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.jsonio import matrix, number, read_json
from gsbp_ros.poses import GL_TO_CV, as_similarity, nearest_rotation, rigid_inverse

log = logging.getLogger(__name__)

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
#: Extensions tried, in this order, for a Blender ``file_path`` given without one.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclass
class TransformsFile:
    """A parsed ``transforms*.json``.

    Attributes:
        path: the file.
        cameras: its frames, in file order.
        applied_transform: [4, 4] original data frame -> this file's frame (identity if absent).
        applied_scale: nerfstudio's ``applied_scale`` (1 if absent).
        sizes_from_images: True when the image sizes were read from the image files (Blender).
    """

    path: Path
    cameras: list[Camera]
    applied_transform: np.ndarray
    applied_scale: float
    sizes_from_images: bool


def read_transforms_json(path: str | Path, meta: Any = None) -> TransformsFile:
    """Parse a nerfstudio or Blender ``transforms*.json`` (``meta``: its already parsed JSON)."""
    path = Path(path)
    if meta is None:
        meta = read_json(path, error=CameraError, what="camera file")
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise CameraError(f"{path}: expected a JSON object with a 'frames' list")
    model = str(meta.get("camera_model", "OPENCV")).upper()
    if model in ("EQUIRECTANGULAR",):
        raise CameraError(f"{path}: camera_model {model} is not a pinhole camera")
    distorted = model != "PINHOLE" and _has_distortion(path, meta, "top level")
    cameras, from_images = [], False
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise CameraError(f"{path}: frame {i} is not a JSON object")
        cam, sized = _frame_camera(path, i, meta, frame)
        cameras.append(cam)
        from_images = from_images or sized
        distorted = distorted or _has_distortion(path, frame, f"frame {i}")
    if distorted or "FISHEYE" in model:
        log.warning(
            "%s: camera_model %s with distortion parameters; distortion is ignored "
            "(views are treated as ideal pinhole cameras)",
            path,
            model,
        )
    applied = np.eye(4)
    if meta.get("applied_transform") is not None:
        applied = affine(meta["applied_transform"], f"{path}: applied_transform")
        as_similarity(applied, what=f"{path}: applied_transform")
    scale = 1.0
    if meta.get("applied_scale") is not None:
        scale = number(meta["applied_scale"], f"{path}: applied_scale", CameraError)
        if scale <= 0:
            raise CameraError(f"{path}: applied_scale must be positive, got {scale}")
    return TransformsFile(path, cameras, applied, scale, from_images)


def load_transforms_json(path: str | Path) -> list[Camera]:
    """The cameras of a nerfstudio or Blender ``transforms*.json``, in the JSON's frame."""
    return read_transforms_json(path).cameras


def read_dataparser_transforms(path: str | Path) -> tuple[np.ndarray, float]:
    """nerfstudio ``dataparser_transforms.json`` -> ([4, 4] T, scale s): p_norm = s (T p_orig)."""
    path = Path(path)
    meta = read_json(path, error=CameraError, what="dataparser transform")
    if not isinstance(meta, dict) or "transform" not in meta or "scale" not in meta:
        raise CameraError(f"{path}: expected a JSON object with 'transform' (3x4) and 'scale'")
    T, _ = as_similarity(affine(meta["transform"], f"{path}: transform"), what=f"{path}: transform")
    scale = number(meta["scale"], f"{path}: scale", CameraError)
    if scale <= 0:
        raise CameraError(f"{path}: scale must be positive, got {scale}")
    return T, scale


def dataparser_camera_transform(
    dataparser: str | Path, cameras_frame: TransformsFile | None
) -> np.ndarray:
    """[4, 4] similarity that moves cameras into a splatfacto export's frame.

    Args:
        dataparser: the ``dataparser_transforms.json`` saved beside the training run.
        cameras_frame: the ``transforms.json`` the cameras come from (its ``applied_transform``
            is undone first), or None for cameras in the original data frame (COLMAP).
    """
    T, scale = read_dataparser_transforms(dataparser)
    S = np.diag([scale, scale, scale, 1.0]) @ T
    if cameras_frame is None:
        return S
    S[:3] /= cameras_frame.applied_scale
    return S @ np.linalg.inv(cameras_frame.applied_transform)


# ---------------------------------------------------------------------------------------------
# frames


def affine(rows: Any, what: str) -> np.ndarray:
    """[4, 4] float64 from a 3x4 or 4x4 nested list of finite numbers."""
    if not isinstance(rows, list) or len(rows) not in (3, 4):
        raise CameraError(f"{what} must be a 3x4 or 4x4 list of numbers")
    out = np.eye(4)
    out[: len(rows)] = matrix(rows, len(rows), 4, what, CameraError)
    return out


def _has_distortion(path: Path, obj: dict, where: str) -> bool:
    values = [obj[k] for k in _DISTORTION_KEYS if obj.get(k) is not None]
    return any(number(v, f"{path}: {where} distortion", CameraError) != 0.0 for v in values)


def _frame_camera(path: Path, i: int, meta: dict, frame: dict) -> tuple[Camera, bool]:
    """One frame's Camera, and whether its size came from the image file."""

    def get(key: str) -> Any:
        return frame.get(key, meta.get(key))

    name = frame.get("file_path")
    if not isinstance(name, str) or not name.strip():
        raise CameraError(f"{path}: frame {i} has no 'file_path'")
    name = name[2:] if name.startswith("./") else name
    where = f"{path}: frame {i} ({name})"
    values: dict[str, Any] = {}
    for k in _INTRINSIC_KEYS:
        v = get(k)
        values[k] = (
            None if v is None else number(v, f"{where} {k}", CameraError, integer=k in ("w", "h"))
        )
    sized = False
    if values["w"] is None or values["h"] is None:
        image = find_frame_image(path.parent, name)
        if image is not None:
            values["w"], values["h"] = image_size(image)
            name = image.relative_to(path.parent).as_posix()
            sized = True
    angle = get("camera_angle_x")
    if values["fl_x"] is None and angle is not None and values["w"] is not None:
        angle = number(angle, f"{where} camera_angle_x", CameraError)
        if not 0 < angle < math.pi:
            raise CameraError(f"{where} camera_angle_x must lie in (0, pi), got {angle}")
        values["fl_x"] = 0.5 * values["w"] / math.tan(0.5 * angle)
    if values["fl_y"] is None:
        values["fl_y"] = values["fl_x"]
    if values["cx"] is None and values["w"] is not None:
        values["cx"] = 0.5 * values["w"]
    if values["cy"] is None and values["h"] is not None:
        values["cy"] = 0.5 * values["h"]
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise CameraError(
            f"{where} lacks intrinsics {', '.join(missing)} (give them per frame or at the "
            "top level; w and h are also read from the frame's image file when it exists)"
        )
    if "transform_matrix" not in frame:
        raise CameraError(f"{where} has no 'transform_matrix'")
    c2w = affine(frame["transform_matrix"], f"{where} transform_matrix")
    sv = np.linalg.svd(c2w[:3, :3], compute_uv=False)
    if np.abs(sv - 1.0).max() > 1e-2:
        raise CameraError(
            f"{where} transform_matrix rotation is not orthonormal "
            f"(singular values {np.round(sv, 4).tolist()})"
        )
    c2w_cv = c2w @ GL_TO_CV
    c2w_cv[:3, :3] = nearest_rotation(c2w_cv[:3, :3])
    fx, fy, cx, cy = (values[k] for k in ("fl_x", "fl_y", "cx", "cy"))
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    try:
        cam = Camera(
            name,
            torch.from_numpy(K),
            torch.from_numpy(rigid_inverse(c2w_cv)),
            int(values["w"]),
            int(values["h"]),
        )
    except CameraError as e:
        raise CameraError(f"{path}: frame {i}: {e}") from None
    return cam, sized


def find_frame_image(folder: Path, file_path: str) -> Path | None:
    """The image file a frame names: ``folder/file_path`` itself, or with an image suffix."""
    base = folder / file_path
    if base.suffix.lower() in {s.lower() for s in IMAGE_SUFFIXES} and base.is_file():
        return base
    for suffix in IMAGE_SUFFIXES:
        cand = base.with_name(base.name + suffix)
        if cand.is_file():
            return cand
    return base if base.is_file() else None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CameraError(f"{path}: cannot read the image size: {exc}") from None


# ---------------------------------------------------------------------------------------------
# writing


def save_transforms_json(
    cameras: Sequence[Camera], path: str | Path, *, image_prefix: str = "images/"
) -> None:
    """Write a nerfstudio ``transforms.json`` with per-frame intrinsics.

    ``file_path`` is ``image_prefix + camera.name`` (nerfstudio paths are relative to the
    JSON file; pass ``image_prefix=""`` when the names already hold the folder).
    """
    frames = []
    for cam in cameras:
        fx, fy, cx, cy = cam.pinhole()
        c2w = np.linalg.inv(cam.world_to_cam.double().numpy()) @ GL_TO_CV
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
