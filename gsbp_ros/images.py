"""Reading RGB and label images from disk (PNG/JPEG via Pillow, or .npy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsbp_ros.errors import FeatureError


def read_rgb_image(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB from an image file (alpha dropped, greyscale expanded)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise FeatureError(f"cannot read image {path}: {exc}") from exc


def read_label_image(path: str | Path) -> np.ndarray:
    """[H, W] int64 label image from an 8/16-bit PNG or an integer .npy."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                    raise FeatureError(
                        f"label image {path} has mode {im.mode}; expected a single-channel "
                        "8- or 16-bit image"
                    )
                arr = np.asarray(im)
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError) as exc:
        raise FeatureError(f"cannot read label image {path}: {exc}") from exc
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise FeatureError(
            f"label image {path} must be a 2D integer image, got {arr.dtype} {list(arr.shape)}"
        )
    return arr.astype(np.int64)
