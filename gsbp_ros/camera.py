"""Camera: one pinhole view with its own intrinsics and image size.

Convention: ``world_to_cam`` maps world points to OpenCV camera axes (x right, y down,
z forward), as COLMAP stores poses and gsplat's ``viewmats`` expect. Pixel (u, v) has its
centre at (u + 0.5, v + 0.5). Camera files are read by :func:`gsbp_ros.cameras.load_cameras`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gsbp_ros.errors import CameraError

#: Largest image side a camera may have. A view of 16384 x 16384 pixels already needs
#: gigabytes per back-projected view; larger sizes in a camera file are a mistake (or an
#: attack) and would otherwise turn into allocations of tens of gigabytes.
MAX_IMAGE_SIDE = 16384


@dataclass
class Camera:
    """A pinhole camera.

    Attributes:
        name: image file name as the dataset stores it (e.g. ``"frame_0001.jpg"``);
            feature maps are looked up by its stem.
        K: [3, 3] intrinsics (fx, fy, cx, cy in pixels of a ``width`` x ``height`` image).
        world_to_cam: [4, 4] rigid transform, world -> OpenCV camera.
        width: image width in pixels.
        height: image height in pixels.
    """

    name: str
    K: Tensor
    world_to_cam: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = torch.as_tensor(self.K, dtype=torch.float32)
        self.world_to_cam = torch.as_tensor(self.world_to_cam, dtype=torch.float32)
        if tuple(self.K.shape) != (3, 3) or tuple(self.world_to_cam.shape) != (4, 4):
            raise CameraError(f"camera {self.name!r}: K must be [3,3] and world_to_cam [4,4]")
        for side in (self.width, self.height):
            if isinstance(side, bool) or not isinstance(side, numbers.Integral):
                raise CameraError(
                    f"camera {self.name!r}: width and height must be whole numbers, "
                    f"got {self.width!r} x {self.height!r}"
                )
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"camera {self.name!r}: size {self.width}x{self.height} is empty")
        if max(self.width, self.height) > MAX_IMAGE_SIDE:
            raise CameraError(
                f"camera {self.name!r}: size {self.width}x{self.height} exceeds "
                f"{MAX_IMAGE_SIDE} pixels per side"
            )
        if not (torch.isfinite(self.K).all() and torch.isfinite(self.world_to_cam).all()):
            raise CameraError(f"camera {self.name!r}: non-finite intrinsics or pose")
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise CameraError(f"camera {self.name!r}: focal lengths must be positive")

    @property
    def stem(self) -> str:
        """File name without directories and extension: the key for feature maps."""
        base = self.name.replace("\\", "/").rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[0] if "." in base else base

    def pinhole(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) as Python floats."""
        K = self.K.double()
        return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])

    @property
    def cam_to_world(self) -> Tensor:
        """[4, 4] inverse of ``world_to_cam``."""
        return torch.linalg.inv(self.world_to_cam)

    @property
    def center(self) -> Tensor:
        """[3] camera position in world coordinates."""
        return self.cam_to_world[:3, 3]

    def scaled(self, factor: float) -> Camera:
        """The same view rendered at ``factor`` times the resolution (pixel-centre exact)."""
        w = max(1, round(self.width * factor))
        h = max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        K = self.K.clone()
        K[0] *= sx
        K[1] *= sy
        return replace(self, K=K, width=w, height=h)

    def to_device(self, device: str | torch.device) -> Camera:
        return replace(self, K=self.K.to(device), world_to_cam=self.world_to_cam.to(device))
