"""Write a selection (extraction) or everything else (deletion) as an Inria-format .ply.

Output paths coming from service requests are confined to one folder
(:func:`check_output_path`). Optional cleanup drops statistical outliers from the selection
first (open3d's ``remove_statistical_outlier``; a numpy/scipy restatement is kept beside it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.errors import QueryError
from gsbp_ros.fileio import FileExistsRefused, atomic_path
from gsbp_ros.scene import GaussianScene


def check_output_path(path: str | os.PathLike, allowed_dir: str | os.PathLike) -> Path:
    """Resolve an output path and confine it to ``allowed_dir``.

    A relative path is taken relative to ``allowed_dir``. Symlinks and ``..`` are resolved
    before the check, so neither can escape the folder. Creates ``allowed_dir`` and the
    file's parent folders (inside it). The check is made at call time: a folder that someone
    swaps for a symlink afterwards is outside what this guards against.

    Returns:
        The resolved absolute path (suffix ``.ply``).
    """
    text = os.fspath(path)
    if not text.strip():
        raise QueryError("output path is empty")
    if "\x00" in text:
        raise QueryError("output path contains a NUL character")
    # resolve() raises RuntimeError on a symlink loop (Python < 3.13) and stat() OSError on
    # a name too long: both are bad requests, not internal errors.
    try:
        base = Path(allowed_dir).expanduser().resolve()
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = base / candidate
        resolved = candidate.resolve()
        if not resolved.is_relative_to(base) or resolved == base:
            raise QueryError(f"output path {text!r} lies outside the output folder {str(base)!r}")
        if resolved.suffix.lower() != ".ply":
            raise QueryError(f"output path {text!r} must end in .ply")
        if resolved.is_dir():
            raise QueryError(f"output path {text!r} is a folder")
        resolved.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise QueryError(f"unusable output path {text!r}: {reason}") from None
    return resolved


def _check_outlier_args(points: np.ndarray, nb_neighbors: int, std_ratio: float) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise QueryError(f"points must have shape [M, 3], got {list(p.shape)}")
    if not np.isfinite(p).all():
        raise QueryError("points hold non-finite values (NaN or Inf)")
    if int(nb_neighbors) < 1 or not (np.isfinite(std_ratio) and std_ratio > 0):
        raise QueryError(
            f"outlier removal needs nb_neighbors >= 1 and std_ratio > 0, "
            f"got {nb_neighbors} and {std_ratio}"
        )
    return p


def statistical_outlier_mask(
    points: np.ndarray, nb_neighbors: int = 20, std_ratio: float = 2.0
) -> np.ndarray:
    """[M] bool, True for inliers, by open3d's ``remove_statistical_outlier``.

    A point is an inlier when the mean distance to its ``nb_neighbors`` nearest points (itself
    included, as open3d counts) is positive and below mean + std_ratio * std over all points.
    Sets of fewer than two points are kept whole (open3d would drop a lone point).
    """
    p = _check_outlier_args(points, nb_neighbors, std_ratio)
    if p.shape[0] < 2:
        return np.ones(p.shape[0], dtype=bool)
    try:
        import open3d as o3d
    except ImportError:
        raise QueryError(
            "cleanup needs open3d, which is not installed (pip install open3d-cpu)"
        ) from None
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    _, kept = cloud.remove_statistical_outlier(nb_neighbors=int(nb_neighbors), std_ratio=std_ratio)
    mask = np.zeros(p.shape[0], dtype=bool)
    mask[np.asarray(kept, dtype=np.int64)] = True
    return mask


def statistical_outlier_mask_reference(
    points: np.ndarray, nb_neighbors: int = 20, std_ratio: float = 2.0
) -> np.ndarray:
    """numpy/scipy restatement of :func:`statistical_outlier_mask` (open3d's exact rule).

    open3d's statistics: the mean over points with a positive mean neighbour distance, but
    divided by the count of all points; the sample standard deviation likewise (Bessel).
    """
    from scipy.spatial import cKDTree

    p = _check_outlier_args(points, nb_neighbors, std_ratio)
    m = p.shape[0]
    if m < 2:
        return np.ones(m, dtype=bool)
    k = min(int(nb_neighbors), m)
    dist, _ = cKDTree(p).query(p, k=k)
    avg = np.asarray(dist, dtype=np.float64).reshape(m, k).mean(axis=1)
    pos = avg > 0
    mean = avg[pos].sum() / m
    std = np.sqrt(((avg[pos] - mean) ** 2).sum() / (m - 1))
    return pos & (avg < mean + std_ratio * std)


def _index_array(indices: Tensor | np.ndarray, n: int) -> np.ndarray:
    idx = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise QueryError(f"a boolean selection must have shape [{n}], got {list(idx.shape)}")
        return np.flatnonzero(idx)
    idx = idx.reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise QueryError(f"indices must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise QueryError(f"indices must lie in [0, {n}), got [{idx.min()}, {idx.max()}]")
    return np.unique(idx)


def export_selection(
    scene: GaussianScene,
    indices: Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    complement: bool = False,
    cleanup: bool = False,
    nb_neighbors: int = 20,
    std_ratio: float = 2.0,
    allowed_dir: str | os.PathLike | None = None,
    overwrite: bool = True,
) -> tuple[Path, int]:
    """Save the selected Gaussians (or all the others) as an Inria .ply, atomically.

    With ``cleanup`` the selection first loses its statistical outliers (by their means):
    stray Gaussians far from the selected object are usually false positives, so extraction
    leaves them out and deletion leaves them in the scene.

    Args:
        scene: the full scene.
        indices: [M] int indices or [N] bool mask of the selection.
        path: output .ply (checked against ``allowed_dir`` when given).
        complement: save everything except the selection (deletion).
        cleanup, nb_neighbors, std_ratio: statistical outlier removal on the selection.
        allowed_dir: confine ``path`` to this folder (see :func:`check_output_path`).
        overwrite: replace an existing file; False refuses (QueryError), atomically: a file
            that appears while this one is written is not replaced either.

    Returns:
        (path written, number of Gaussians in it).
    """
    if allowed_dir is not None:
        out = check_output_path(path, allowed_dir)
    else:
        out = Path(path)
        if out.suffix.lower() != ".ply":
            raise QueryError(f"output path {str(out)!r} must end in .ply")
    if not overwrite and (out.exists() or out.is_symlink()):
        raise QueryError(_exists_message(out))
    n = scene.num_gaussians
    idx = _index_array(indices, n)
    if cleanup and idx.size:
        means = scene.means[torch.from_numpy(idx).to(scene.device)].detach().cpu().numpy()
        inliers = statistical_outlier_mask(means, nb_neighbors, std_ratio)
        # open3d keeps nothing when every mean neighbour distance is equal (std 0 and a
        # strict "<" test), e.g. a regular grid: such a set has no outliers at all.
        if inliers.any():
            idx = idx[inliers]
    if complement:
        keep = np.ones(n, dtype=bool)
        keep[idx] = False
        idx = np.flatnonzero(keep)
    if idx.size == 0:
        what = "every Gaussian is selected" if complement else "the selection is empty"
        raise QueryError(f"nothing to export: {what}")
    subset = scene.subset(torch.from_numpy(idx).to(scene.device))
    try:
        if overwrite:
            subset.save(out)
        else:
            with atomic_path(out, overwrite=False) as tmp:
                subset.save(tmp)
    except FileExistsRefused:
        raise QueryError(_exists_message(out)) from None
    except OSError as exc:  # disk full, permissions, a vanished folder
        raise QueryError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    return out, int(idx.size)


def _exists_message(out: Path) -> str:
    return f"output path {str(out)!r} exists: ask for overwrite to replace it"
