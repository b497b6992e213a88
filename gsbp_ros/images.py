"""Reading RGB and label images from disk (PNG/JPEG via Pillow, or .npy): the one place that
does, so that every photo (CLI, nodes, :func:`gsbp_ros.features.load_image`) and every label
map (:class:`gsbp_ros.features.LabelMapSource`, evaluation) is decoded the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsbp_ros.errors import FeatureError

#: Pillow modes that hold one integer per pixel (8-bit, palette indices, bits, 16/32-bit).
LABEL_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")


def _open_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    # UnidentifiedImageError is an OSError; a decompression bomb is not.
    return (OSError, ValueError, Image.DecompressionBombError)


def read_rgb_image(
    path: str | Path, *, background: tuple[float, float, float] | None = None
) -> np.ndarray:
    """[H, W, 3] uint8 RGB from an image file (greyscale expanded).

    Alpha is dropped, or, with ``background`` (RGB in 0..1), the image is composited over
    it: a NeRF-synthetic photo with a transparent background then looks like a render of the
    same view over that background.
    16-bit greyscale files (Pillow modes ``I;16*`` and ``I``) are scaled to 8 bits;
    Pillow's own ``convert("RGB")`` would clip every value above 255 to white.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            if not im.mode.startswith("I"):
                has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                if background is None or not has_alpha:
                    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
                bg = np.asarray(background, dtype=np.float64)
                out = rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])
                return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
            wide = np.asarray(im).astype(np.int64)
    except _open_errors() as exc:
        raise FeatureError(f"cannot read image {path}: {exc}") from exc
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise FeatureError(f"image {path} holds values outside 0..65535; expected 8 or 16 bits")
    grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def read_label_image(path: str | Path) -> np.ndarray:
    """[H, W] int64 label ids from a single-channel 8/16-bit PNG or an integer ``.npy``.

    Values are not range-checked here. A ``.npy`` may also be [H, W, 1]; it is read with
    ``allow_pickle=False``.
    """
    from PIL import Image

    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                if im.mode not in LABEL_MODES:
                    raise FeatureError(
                        f"label image {path} is a {im.mode} image; write label ids as a "
                        "single-channel 8-bit or 16-bit PNG (colour-coded masks are not read)"
                    )
                arr = np.asarray(im)
    except _open_errors() as exc:
        raise FeatureError(f"cannot read label image {path}: {exc}") from exc
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype.kind not in "iub":
        raise FeatureError(
            f"label image {path} holds {arr.dtype} values; label ids must be integers"
        )
    if arr.ndim != 2:
        raise FeatureError(f"label image {path} has shape {list(arr.shape)}; expected [H, W]")
    return arr.astype(np.int64)
