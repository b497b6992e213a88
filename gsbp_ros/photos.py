"""Real photos as the input of the 2D feature models (the paper's way).

The paper computes DINOv2 / CLIP features on the training images; a :class:`PhotoSet` hands
each view's photo to the models instead of its render. Photos are matched to cameras by
image name, resized to the view (antialiased bilinear), and composited over the render
background when they have alpha. A camera without a photo falls back to its render.

Matching, for a camera named ``n`` (COLMAP ``frame_0001.jpg`` or ``cam1/img.jpg``, nerfstudio
``images/frame_0001.png``, Inria ``DSC07956``, Blender ``train/r_0``), in this order:

1. ``folder / n`` and ``folder / basename(n)``, also with an image extension added when
   ``n`` has none (two files that differ only in it are an error);
2. a file directly in ``folder`` whose stem is the stem of ``n`` (two such files, e.g.
   ``a.jpg`` and ``a.png``, are an error), unless several cameras share that stem.

A photo of another size than its camera is resized when the aspect ratios agree within 1%
(downscaled image folders such as ``images_4``); otherwise it is an error naming the file,
raised when the set is built, before any model runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Photos whose aspect ratio differs from the camera's by more than this are refused.
ASPECT_TOLERANCE = 0.01


class PhotoSet:
    """The photos of a set of cameras.

    Args:
        folder: where the photos are.
        cameras: the views (their ``name`` is matched, their size checked).
        background: RGB in 0..1 that photos with alpha are composited over (the render
            background, so photo and render look alike where the photo is transparent).

    Attributes:
        paths: camera name -> photo file, for the cameras that have one.
        missing: names of the cameras without a photo.
    """

    def __init__(
        self,
        folder: str | Path,
        cameras: Sequence[Camera],
        *,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FeatureError(f"images folder {self.folder} does not exist")
        self.background = background
        by_stem: dict[str, list[Path]] = {}
        for p in sorted(self.folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                by_stem.setdefault(p.stem, []).append(p)
        stems = Counter(c.stem for c in cameras)
        self.paths: dict[str, Path] = {}
        self.missing: list[str] = []
        for cam in cameras:
            path = self._find(cam, by_stem, unique_stem=stems[cam.stem] == 1)
            if path is None:
                self.missing.append(cam.name)
            else:
                self.paths[cam.name] = path
        self._sizes = {name: _photo_size(p) for name, p in self.paths.items()}
        for cam in cameras:
            if cam.name in self.paths:
                self._check_aspect(cam)
        self.used: dict[str, str] = {}  # view name -> "photo" | "render"
        self._lock = threading.Lock()
        self._last: tuple[str, int, int, Tensor] | None = None

    # -- matching ----------------------------------------------------------------------------
    def _find(self, cam: Camera, by_stem: dict[str, list[Path]], unique_stem: bool) -> Path | None:
        name = cam.name.replace("\\", "/")
        base = name.rsplit("/", 1)[-1]
        for rel in dict.fromkeys((name, base)):
            cand = self.folder / rel
            if cand.suffix.lower() in IMAGE_SUFFIXES and cand.is_file():
                return cand
            suffixes = [*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)]
            found = [p for s in suffixes if (p := cand.with_name(cand.name + s)).is_file()]
            if found:
                return self._one(cam, found)
        found = by_stem.get(cam.stem, []) if unique_stem else []
        return self._one(cam, found) if found else None

    def _one(self, cam: Camera, found: list[Path]) -> Path:
        if len(found) > 1:
            names = ", ".join(p.relative_to(self.folder).as_posix() for p in sorted(found))
            raise FeatureError(
                f"images folder {self.folder} holds {names} for camera {cam.name!r}; keep one"
            )
        return found[0]

    def _check_aspect(self, cam: Camera) -> None:
        pw, ph = self._sizes[cam.name]
        if (pw, ph) == (cam.width, cam.height):
            return
        if abs(pw * cam.height - ph * cam.width) > ASPECT_TOLERANCE * pw * cam.height:
            raise FeatureError(
                f"photo {self.paths[cam.name]} is {pw}x{ph} but its camera {cam.name!r} is "
                f"{cam.width}x{cam.height} (aspect {pw / ph:.4f} vs {cam.width / cam.height:.4f}); "
                "photos are resized only when the aspect ratios agree"
            )

    # -- use -------------------------------------------------------------------------------
    def image(self, view: Camera, render: Tensor) -> Tensor:
        """The photo of ``view`` at the view's size ([H, W, 3] float 0..1 on the render's
        device), or ``render`` itself when the view has no photo."""
        path = self.paths.get(view.name)
        with self._lock:
            self.used[view.name] = "render" if path is None else "photo"
            if path is None:
                return render
            last = self._last
            if last is not None and last[:3] == (view.name, view.width, view.height):
                return last[3].to(render.device)
        image = self._load(path, view)
        with self._lock:
            self._last = (view.name, view.width, view.height, image)
        return image.to(render.device)

    def _load(self, path: Path, view: Camera) -> Tensor:
        from gsbp_ros.features.base import image_to_tensor
        from gsbp_ros.images import read_rgb_image

        image = image_to_tensor(read_rgb_image(path, background=self.background))
        if (image.shape[1], image.shape[0]) != self._sizes[view.name]:
            raise FeatureError(f"photo {path} changed size while in use")
        if tuple(image.shape[:2]) == (view.height, view.width):
            return image
        shrinking = image.shape[0] > view.height or image.shape[1] > view.width
        x = torch.nn.functional.interpolate(
            image.permute(2, 0, 1)[None],
            size=(view.height, view.width),
            mode="bilinear",
            align_corners=False,
            antialias=shrinking,
        )
        return x[0].permute(1, 2, 0).clamp(0.0, 1.0).contiguous()

    def counts(self) -> tuple[int, int]:
        """(views fed a photo, views fed their render) so far."""
        with self._lock:
            photos = sum(1 for v in self.used.values() if v == "photo")
            return photos, len(self.used) - photos

    def digest(self) -> str:
        """What identifies the photos for a cache key: each matched file's name, byte size and
        modification time (hashing the bytes of thousands of photos at every start would
        cost seconds; replacing a photo changes its time)."""
        h = hashlib.sha256(str(self.folder.resolve()).encode())
        for name in sorted(self.paths):
            st = self.paths[name].stat()
            h.update(f"\n{name}|{self.paths[name].name}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def summary(self) -> str:
        """One line: how many views have a photo, and where they come from."""
        n = len(self.paths) + len(self.missing)
        line = f"{len(self.paths)} of {n} views have a photo in {self.folder}"
        if self.missing:
            line += f"; {len(self.missing)} use their render (e.g. {self.missing[0]})"
        return line


def _photo_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FeatureError(f"cannot read photo {path}: {exc}") from None
