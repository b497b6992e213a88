"""Sparse CSR helpers shared by the engines (torch sparse, any device)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def coo_to_csr(
    rows: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int], *, coalesce: bool = True
) -> Tensor:
    """CSR matrix from (row, col, value) triples; duplicates are summed (in float64).

    With ``coalesce=False`` the triples must already be unique; they only get sorted.
    Rows and columns come out sorted, which every sparse backend accepts.
    """
    n_rows, n_cols = size
    key = rows.to(torch.int64) * n_cols + cols.to(torch.int64)
    if coalesce:
        key, inverse = torch.unique(key, sorted=True, return_inverse=True)
        values = torch.zeros(key.numel(), device=key.device, dtype=torch.float64).index_add_(
            0, inverse, values.double()
        )
    else:
        key, perm = torch.sort(key)
        values = values[perm]
    r = torch.div(key, n_cols, rounding_mode="floor")
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=key.device)
    crow[1:] = torch.cumsum(torch.bincount(r, minlength=n_rows), 0)
    return csr(crow, key - r * n_cols, values.to(torch.float32), size)


def csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """``torch.sparse_csr_tensor`` without the beta warning (the operations used are stable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def spmm(mat: Tensor, dense: Tensor) -> Tensor:
    """CSR ``mat`` (float32) times a dense matrix, in float64 if ``dense`` is float64."""
    if dense.dtype == torch.float64:
        return mat.to(torch.float64) @ dense
    if not torch.is_floating_point(dense):
        raise ValueError(f"expected floating point values, got {dense.dtype}")
    return mat @ dense.to(torch.float32).contiguous()
