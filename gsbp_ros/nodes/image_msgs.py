"""sensor_msgs/Image <-> numpy: :func:`image_to_numpy`, :func:`image_to_rgb`,
:func:`image_to_mask` (encoding / step / size checks) and :func:`numpy_to_image`."""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from gsbp_ros.nodes.errors import MessageError

# encoding -> (dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
MASK_ENCODINGS = ("mono8", "mono16", "8UC1", "16UC1")


def image_to_numpy(msg: Image, what: str = "image") -> np.ndarray:
    """sensor_msgs/Image -> [H, W, C] (C > 1) or [H, W] array of the encoding's dtype.

    Checks the encoding, that ``step`` holds a row (``step >= width * bytes per pixel``; the
    padding beyond is dropped) and that ``data`` holds ``step * height`` bytes.
    """
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise MessageError(
            f"{what}: unsupported encoding {enc!r} (supported: {', '.join(IMAGE_ENCODINGS)})"
        )
    dtype, channels = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageError(f"{what}: empty image ({w}x{h})")
    row = w * channels * dtype.itemsize
    if step < row:
        raise MessageError(
            f"{what}: step {step} is smaller than width * bytes per pixel = {w} * "
            f"{channels * dtype.itemsize} = {row} ({enc})"
        )
    if step % dtype.itemsize:
        raise MessageError(f"{what}: step {step} is not a multiple of {dtype.itemsize} ({enc})")
    n = len(msg.data)
    if n != step * h:
        raise MessageError(
            f"{what}: data has {n} bytes, expected step * height = {step} * {h} = {step * h}"
        )
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, :row]
    order = ">" if msg.is_bigendian else "<"
    arr = np.ascontiguousarray(raw).view(dtype.newbyteorder(order)).astype(dtype)
    return arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)


def image_to_rgb(msg: Image, what: str = "image") -> np.ndarray:
    """A colour Image (rgb8, bgr8, rgba8, bgra8) -> [H, W, 3] uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise MessageError(
            f"{what}: encoding {msg.encoding!r} is not a colour encoding "
            f"(expected one of {', '.join(COLOR_ENCODINGS)})"
        )
    arr = image_to_numpy(msg, what)
    if msg.encoding.startswith("bgr"):
        arr = arr[..., [2, 1, 0]]
    return np.ascontiguousarray(arr[..., :3])


def image_to_mask(msg: Image, what: str = "mask") -> np.ndarray:
    """A label mask Image (mono8 / mono16, also 8UC1 / 16UC1) -> [H, W] int64."""
    if msg.encoding not in MASK_ENCODINGS:
        raise MessageError(
            f"{what}: encoding {msg.encoding!r} is not a mask encoding "
            f"(expected one of {', '.join(MASK_ENCODINGS)})"
        )
    return image_to_numpy(msg, what).astype(np.int64)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """[H, W, C] / [H, W] array -> sensor_msgs/Image (little endian, no padding)."""
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported encoding {encoding!r}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise MessageError(f"{encoding} needs {channels} channels, got shape {list(arr.shape)}")
    h, w = arr.shape[:2]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0
    msg.step = w * channels * dtype.itemsize
    buf = array.array("B")
    buf.frombytes(np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes())
    msg.data = buf
    return msg
