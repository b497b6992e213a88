"""The ``cameras.json`` of an Inria 3D Gaussian Splatting output folder.

The reference implementation (``utils/camera_utils.py: camera_to_JSON``) writes a list of::

    {"id": 0, "img_name": "DSC07956", "width": 4946, "height": 3286,
     "position": [x, y, z], "rotation": [[...], [...], [...]], "fx": ..., "fy": ...}

``position`` is the camera centre and ``rotation`` the camera-to-world rotation (its columns
are the camera axes in the world), in OpenCV axes and in the COLMAP world frame the splats
were trained in (the code names the matrix ``W2C`` but inverts world-to-camera first).
``img_name`` is the image file name without its extension. The principal point is the image
centre (the reference rasterizer has no other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError
from gsbp_ros.jsonio import matrix, number, read_json
from gsbp_ros.poses import nearest_rotation, rigid_inverse


def load_inria_cameras(path: str | Path, entries: Any = None) -> list[Camera]:
    """Cameras of an Inria ``cameras.json`` (``entries``: its already parsed JSON), unsorted."""
    path = Path(path)
    if entries is None:
        entries = read_json(path, error=CameraError, what="camera file")
    if not isinstance(entries, list):
        raise CameraError(f"{path}: expected a JSON list of cameras (Inria 3DGS cameras.json)")
    cameras = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        cam = _entry_camera(path, i, entry)
        if cam.name in seen:
            raise CameraError(
                f"{path}: entries {seen[cam.name]} and {i} both name image {cam.name!r}"
            )
        seen[cam.name] = i
        cameras.append(cam)
    return cameras


def _entry_camera(path: Path, i: int, entry: Any) -> Camera:
    if not isinstance(entry, dict):
        raise CameraError(f"{path}: camera {i} is not a JSON object")
    name = entry.get("img_name")
    if not isinstance(name, str) or not name.strip():
        raise CameraError(f"{path}: camera {i} has no 'img_name'")
    where = f"{path}: camera {i} ({name})"
    missing = [k for k in ("width", "height", "position", "rotation", "fx", "fy") if k not in entry]
    if missing:
        raise CameraError(f"{where} lacks {', '.join(missing)}")
    width = number(entry["width"], f"{where} width", CameraError, integer=True)
    height = number(entry["height"], f"{where} height", CameraError, integer=True)
    fx = number(entry["fx"], f"{where} fx", CameraError)
    fy = number(entry["fy"], f"{where} fy", CameraError)
    (center,) = matrix([entry["position"]], 1, 3, f"{where} position", CameraError)
    rot = np.asarray(matrix(entry["rotation"], 3, 3, f"{where} rotation", CameraError))
    sv = np.linalg.svd(rot, compute_uv=False)
    if np.abs(sv - 1.0).max() > 1e-2 or np.linalg.det(rot) <= 0:
        raise CameraError(
            f"{where} rotation is not a rotation matrix (singular values "
            f"{np.round(sv, 4).tolist()}, determinant {np.linalg.det(rot):.3g})"
        )
    c2w = np.eye(4)
    c2w[:3, :3] = nearest_rotation(rot)
    c2w[:3, 3] = center
    K = np.array([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])
    try:
        return Camera(
            name, torch.from_numpy(K), torch.from_numpy(rigid_inverse(c2w)), width, height
        )
    except CameraError as exc:
        raise CameraError(f"{path}: {exc}") from None
