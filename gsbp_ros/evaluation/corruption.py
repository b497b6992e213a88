"""Ways to damage per-view label maps, the bad input a robustness sweep feeds the lifting.

Every function takes ``labels: [H, W]`` integer ids (0 = unlabelled, 1..L = a label) and
returns a new array of the same shape; none modifies its input. Randomness comes only from
the ``rng`` argument (``numpy.random.Generator``), so a seed reproduces a sweep exactly.

- :func:`erode`: every segment loses a ``k``-pixel rim, which becomes unlabelled (masks
  drawn too tight, with unknown borders);
- :func:`dilate`: every segment grows by ``k`` pixels over larger segments and unlabelled
  pixels (masks drawn too loose: an object bleeds onto the table it stands on);
- :func:`flip_segments`: a fraction of the connected segments gets a wrong label (a
  detector that names the wrong object);
- :func:`salt_and_pepper`: a fraction of the pixels gets a random value in 0..L;
- :func:`drop_views`: a fraction of the views has no label map at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(labels: np.ndarray) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer [H, W] array, got {a.dtype} {list(a.shape)}")
    return a.astype(np.int64, copy=False)


def _window(k: int) -> int:
    if int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer number of pixels, got {k}")
    return 2 * int(k) + 1


def erode(labels: np.ndarray, k: int) -> np.ndarray:
    """Unlabel every pixel within ``k`` pixels (square window) of a different value.

    Image borders do not erode (the window is clamped to the image). ``k = 0`` is a copy.
    """
    from scipy import ndimage

    a = _check(labels)
    size = _window(k)
    if size == 1:
        return a.copy()
    lo = ndimage.minimum_filter(a, size=size, mode="nearest")
    hi = ndimage.maximum_filter(a, size=size, mode="nearest")
    return np.where((lo == a) & (hi == a), a, 0)


def dilate(labels: np.ndarray, k: int) -> np.ndarray:
    """Grow every labelled segment by ``k`` pixels over larger ones and over unlabelled pixels.

    Labels are painted in order of decreasing area in this view, each dilated by a square of
    side ``2k + 1``: a small object ends up ``k`` pixels larger on every side where it
    touched the table or the background, and the table grows over the background only.
    Equal areas are painted in increasing label order.
    """
    from scipy import ndimage

    a = _check(labels)
    size = _window(k)
    if size == 1:
        return a.copy()
    ids, counts = np.unique(a[a > 0], return_counts=True)
    out = a.copy()
    structure = np.ones((size, size), dtype=bool)
    for i in np.lexsort((ids, -counts)):  # largest first; later (smaller) segments win
        grown = ndimage.binary_dilation(a == ids[i], structure=structure)
        out[grown] = ids[i]
    return out


def flip_segments(
    labels: np.ndarray, fraction: float, num_labels: int, rng: np.random.Generator
) -> np.ndarray:
    """Give each connected labelled segment, with probability ``fraction``, a wrong label.

    Segments are 4-connected regions of one value > 0; the wrong label is drawn uniformly
    from the other ``num_labels - 1`` labels.
    """
    from scipy import ndimage

    a = _check(labels)
    _check_fraction(fraction, "fraction")
    if num_labels < 2:
        raise ValueError(f"flipping needs at least 2 labels, got {num_labels}")
    out = a.copy()
    for value in np.unique(a[a > 0]):
        comp, n = ndimage.label(a == value)
        flip = rng.random(n) < fraction
        # an offset in 1..L-1 added modulo L never lands on the label itself
        offset = rng.integers(1, num_labels, size=n)
        for c in np.flatnonzero(flip):
            out[comp == c + 1] = (value - 1 + offset[c]) % num_labels + 1
    return out


def salt_and_pepper(
    labels: np.ndarray, fraction: float, num_labels: int, rng: np.random.Generator
) -> np.ndarray:
    """Replace each pixel, with probability ``fraction``, by a uniform random value in 0..L."""
    a = _check(labels)
    _check_fraction(fraction, "fraction")
    hit = rng.random(a.shape) < fraction
    out = a.copy()
    out[hit] = rng.integers(0, num_labels + 1, size=int(hit.sum()))
    return out


def drop_views(names: Sequence[str], fraction: float, rng: np.random.Generator) -> list[str]:
    """The views that keep their label map: ``round(fraction * len)`` of them are dropped at
    random, at least one is kept. Order is preserved."""
    _check_fraction(fraction, "fraction")
    names = list(names)
    drop = min(round(fraction * len(names)), len(names) - 1)
    gone = set(rng.choice(len(names), size=drop, replace=False).tolist()) if drop > 0 else set()
    return [n for i, n in enumerate(names) if i not in gone]


def _check_fraction(fraction: float, what: str) -> None:
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"{what} must lie in [0, 1], got {fraction}")
