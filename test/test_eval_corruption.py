"""Label-map corruptions against brute-force restatements of their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from gsbp_ros.evaluation import corruption


def _random_maps(seed: int, n: int = 6) -> list[np.ndarray]:
    """Blocky label maps (segments of several sizes, some touching the border)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n):
        a = np.zeros((13, 17), np.int64)
        for _ in range(5):
            y, x = rng.integers(0, 13), rng.integers(0, 17)
            h, w = rng.integers(1, 7), rng.integers(1, 9)
            a[y : y + h, x : x + w] = rng.integers(1, 5)
        maps.append(a)
    return maps


def _window(a: np.ndarray, y: int, x: int, k: int) -> np.ndarray:
    return a[max(0, y - k) : y + k + 1, max(0, x - k) : x + k + 1]


def erode_reference(a: np.ndarray, k: int) -> np.ndarray:
    out = a.copy()
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            if (_window(a, y, x, k) != a[y, x]).any():
                out[y, x] = 0
    return out


def dilate_reference(a: np.ndarray, k: int) -> np.ndarray:
    """The smallest segment (ties: the larger id) within k px of a pixel claims it."""
    ids, counts = np.unique(a[a > 0], return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    out = a.copy()
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            near = {int(v) for v in np.unique(_window(a, y, x, k)) if v > 0}
            if near:
                out[y, x] = min(near, key=lambda v: (area[v], -v))
    return out


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_erode_and_dilate_match_their_definitions(k):
    for a in _random_maps(k):
        before = a.copy()
        np.testing.assert_array_equal(corruption.erode(a, k), erode_reference(a, k))
        np.testing.assert_array_equal(corruption.dilate(a, k), dilate_reference(a, k))
        np.testing.assert_array_equal(a, before)  # inputs untouched


def test_dilate_grows_a_small_object_over_the_table_by_k():
    a = np.ones((20, 20), np.int64)  # table
    a[8:11, 8:11] = 2  # a 3x3 mug
    out = corruption.dilate(a, 2)
    assert (out == 2).sum() == 7 * 7 and (out[6:13, 6:13] == 2).all()
    assert corruption.erode(a, 1).tolist().count([0] * 20) == 0  # borders do not erode
    assert (corruption.erode(a, 1) == 2).sum() == 1


def test_flip_segments_changes_whole_segments_to_other_labels():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    maps = _random_maps(7, n=40)
    flipped = changed = total = 0
    for a in maps:
        out = corruption.flip_segments(a, 0.3, 4, rng)
        for value in np.unique(a[a > 0]):
            comp, n = ndimage.label(a == value)
            for c in range(1, n + 1):
                new = np.unique(out[comp == c])
                assert new.size == 1 and 1 <= new[0] <= 4  # whole segment, valid label
                total += 1
                if new[0] != value:
                    flipped += 1
        changed += int((out != a).any())
        assert (out[a == 0] == 0).all()  # unlabelled pixels stay unlabelled
    assert 0.2 < flipped / total < 0.4, (flipped, total)
    rng = np.random.default_rng(1)
    for a in maps[:5]:
        np.testing.assert_array_equal(corruption.flip_segments(a, 0.0, 4, rng), a)
        out = corruption.flip_segments(a, 1.0, 4, rng)
        assert ((out != a) == (a > 0)).all()  # every labelled pixel changed


def test_salt_and_pepper_and_drop_views():
    rng = np.random.default_rng(3)
    a = np.full((100, 100), 2, np.int64)
    out = corruption.salt_and_pepper(a, 0.25, 4, rng)
    hit = out != 2
    # a replaced pixel keeps value 2 with probability 1/5
    assert 0.25 * 0.8 - 0.02 < hit.mean() < 0.25 * 0.8 + 0.02
    assert set(np.unique(out).tolist()) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(corruption.salt_and_pepper(a, 0.0, 4, rng), a)

    names = [f"v{i}" for i in range(10)]
    kept = corruption.drop_views(names, 0.3, np.random.default_rng(5))
    assert len(kept) == 7 and kept == sorted(kept, key=names.index)
    assert kept == corruption.drop_views(names, 0.3, np.random.default_rng(5))
    assert len(corruption.drop_views(names, 1.0, np.random.default_rng(5))) == 1
    assert corruption.drop_views(names, 0.0, np.random.default_rng(5)) == names


def test_bad_arguments_raise():
    a = np.zeros((4, 4), np.int64)
    with pytest.raises(ValueError, match="non-negative"):
        corruption.erode(a, -1)
    with pytest.raises(ValueError, match="integer"):
        corruption.dilate(a.astype(float), 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corruption.salt_and_pepper(a, 1.5, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2 labels"):
        corruption.flip_segments(a, 0.5, 1, np.random.default_rng(0))
