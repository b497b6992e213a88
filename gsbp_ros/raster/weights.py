"""The compositing weights of one view behind one interface, and their explicit sparse form.

The rasterizer's output for one view is linear in the per-Gaussian values:
``render(v)(p) = sum_k w_k(p) v_k`` with ``w_k(p) = alpha_k(p) T_k(p)``. Every engine returns
a :class:`ViewWeights`; rendering, back-projection (``W^T F``), weight sums and alpha are all
products with the same matrix W.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from gsbp_ros.errors import FeatureError
from gsbp_ros.raster.bilinear import bilinear_matrix, bilinear_pixel_taps
from gsbp_ros.raster.sparse import coo_to_csr, spmm


class ViewWeights(ABC):
    """The compositing weights ``w_k(p)`` of one view, behind one interface for all engines.

    ``render``, ``backproject``, ``weight_sum`` and ``alpha`` are all linear in ``w``; see
    ``docs/architecture.md`` for the contract. Results live on ``device`` (the scene's);
    inputs on another device are moved there.
    """

    width: int
    height: int
    num_gaussians: int
    device: torch.device

    @abstractmethod
    def render(self, values: Tensor) -> Tensor:
        """[N, C] per-Gaussian values -> [H, W, C] ``sum_k w_k(p) v_k`` (no background)."""

    @abstractmethod
    def backproject(self, features: Tensor) -> Tensor:
        """[H', W', C] feature map -> [N, C] ``sum_p w_k(p) Up(F)(p)``.

        ``Up`` is bilinear resizing to H x W with ``align_corners=False`` (the semantics of
        ``torch.nn.functional.interpolate``), the identity when the sizes already match.
        """

    def backproject_into(self, maps: Sequence[Tensor], sums: Sequence[Tensor]) -> None:
        """``sums[i] += W^T Up(maps[i])`` in place, for every map of this view in one pass.

        Args:
            maps: feature maps [H'_i, W'_i, C_i] (any sizes).
            sums: accumulators [N, C_i] float32 on ``device``.

        The streaming back-projection calls this so that no [N, C] temporary is made per
        view; engines override it (this default is the plain definition).
        """
        for fmap, out in zip(maps, sums, strict=True):
            out += self.backproject(fmap).to(out.dtype)

    @abstractmethod
    def weight_sum(self) -> Tensor:
        """[N] ``sum_p w_k(p)``: how much of each Gaussian this view sees (0 = unseen)."""

    @abstractmethod
    def alpha(self) -> Tensor:
        """[H, W] accumulated opacity ``sum_k w_k(p)``."""

    def _check_values(self, values: Tensor) -> None:
        if values.ndim != 2 or values.shape[0] != self.num_gaussians:
            raise ValueError(
                f"values must have shape [N={self.num_gaussians}, C], got {list(values.shape)}"
            )

    def _check_features(self, features: Tensor) -> None:
        check_feature_map(features)


def check_feature_map(features: Tensor) -> None:
    """FeatureError unless ``features`` is a floating point [H', W', C] map with no empty side."""
    if features.ndim != 3 or min(features.shape) == 0:
        raise FeatureError(
            f"feature map must have shape [H', W', C] with no empty dimension, "
            f"got {list(features.shape)}"
        )
    if not torch.is_floating_point(features):
        raise FeatureError(f"feature map must be floating point, got {features.dtype}")


class SparseViewWeights(ViewWeights):
    """Explicit sparse weights of one view.

    Attributes:
        gaussian_ids: [P] int64 Gaussian index of each non-zero weight.
        pixel_ids: [P] int64 pixel index ``y * width + x``.
        weights: [P] float32 ``alpha * T``.
        Pairs are ordered by pixel, then front to back.

    ``render`` and ``backproject`` are sparse-dense products with CSR matrices built on
    first use and cached: the pixel-major ``W [H*W, N]``, the Gaussian-major ``W^T``, and
    ``W^T Up`` per feature-map size (the bilinear upsampling folded in, so no [H, W, C]
    tensor is ever made).
    """

    def __init__(
        self,
        gaussian_ids: Tensor,
        pixel_ids: Tensor,
        weights: Tensor,
        *,
        width: int,
        height: int,
        num_gaussians: int,
    ) -> None:
        self.gaussian_ids = gaussian_ids
        self.pixel_ids = pixel_ids
        self.weights = weights
        self.width = int(width)
        self.height = int(height)
        self.num_gaussians = int(num_gaussians)
        self._pixel_major: Tensor | None = None
        self._folded: dict[tuple[int, int], Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def nnz(self) -> int:
        return int(self.weights.numel())

    def to_dense(self) -> Tensor:
        """[H*W, N] float32 dense weight matrix (tests and tiny scenes only)."""
        dense = torch.zeros(
            self.height * self.width, self.num_gaussians, device=self.device, dtype=torch.float32
        )
        dense.index_put_((self.pixel_ids, self.gaussian_ids), self.weights, accumulate=True)
        return dense

    # -- the ViewWeights interface --------------------------------------------------------
    def render(self, values: Tensor) -> Tensor:
        self._check_values(values)
        if self._pixel_major is None:
            self._pixel_major = coo_to_csr(
                self.pixel_ids,
                self.gaussian_ids,
                self.weights,
                (self.height * self.width, self.num_gaussians),
                coalesce=False,
            )
        out = spmm(self._pixel_major, values.to(self.device))
        return out.reshape(self.height, self.width, -1)

    def backproject(self, features: Tensor) -> Tensor:
        self._check_features(features)
        in_h, in_w, c = features.shape
        flat = features.to(self.device).reshape(in_h * in_w, c)
        return spmm(self.folded_matrix(in_h, in_w), flat)

    def backproject_into(self, maps: Sequence[Tensor], sums: Sequence[Tensor]) -> None:
        for fmap, out in zip(maps, sums, strict=True):
            self._check_features(fmap)
            in_h, in_w, c = fmap.shape
            if out.shape != (self.num_gaussians, c) or out.dtype != torch.float32:
                raise ValueError(
                    f"accumulator must be float32 [{self.num_gaussians}, {c}], "
                    f"got {out.dtype} {list(out.shape)}"
                )
            flat = fmap.to(device=self.device, dtype=torch.float32).reshape(in_h * in_w, c)
            # In place: the sparse BLAS writes straight into the accumulator.
            out.addmm_(self.folded_matrix(in_h, in_w), flat.contiguous())

    def weight_sum(self) -> Tensor:
        out = torch.zeros(self.num_gaussians, device=self.device, dtype=torch.float32)
        return out.index_add_(0, self.gaussian_ids, self.weights)

    def alpha(self) -> Tensor:
        out = torch.zeros(self.height * self.width, device=self.device, dtype=torch.float32)
        return out.index_add_(0, self.pixel_ids, self.weights).reshape(self.height, self.width)

    # -- back-projection matrices -----------------------------------------------------------
    def folded_matrix(self, in_height: int, in_width: int) -> Tensor:
        """[N, H'*W'] CSR matrix ``W^T Up``: back-projection of an H' x W' map in one product.

        Cached per size: every feature map of this view at that size reuses it.
        """
        key = (int(in_height), int(in_width))
        if key == (self.height, self.width):
            return self._gaussian_major()
        if key not in self._folded:
            self._folded[key] = self._fold(*key)
        return self._folded[key]

    def _gaussian_major(self) -> Tensor:
        """[N, H*W] CSR ``W^T``."""
        full = (self.height, self.width)
        if full not in self._folded:
            self._folded[full] = coo_to_csr(
                self.gaussian_ids,
                self.pixel_ids,
                self.weights,
                (self.num_gaussians, self.height * self.width),
                coalesce=False,
            )
        return self._folded[full]

    def _fold(self, in_h: int, in_w: int) -> Tensor:
        """``W^T @ U`` as a sparse-sparse product (about 5x faster than coalescing by sort)."""
        up = bilinear_matrix(self.height, self.width, in_h, in_w, device=self.device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return (self._gaussian_major() @ up).to_sparse_csr()
        except (RuntimeError, NotImplementedError):
            # A backend without sparse @ sparse: the plain construction gives the same matrix.
            return self.fold_by_coalescing(in_h, in_w)

    def fold_by_coalescing(self, in_h: int, in_w: int) -> Tensor:
        """Reference construction of ``W^T Up``: spread every weight over the 4 bilinear
        taps of its pixel and sum duplicates (several pixels of one Gaussian reading the
        same source sample)."""
        src, tap_w = bilinear_pixel_taps(self.height, self.width, in_h, in_w, device=self.device)
        rows = self.gaussian_ids[:, None].expand(-1, 4).reshape(-1)
        cols = src[self.pixel_ids].reshape(-1)
        vals = (self.weights[:, None].double() * tap_w[self.pixel_ids]).reshape(-1)
        keep = vals != 0
        return coo_to_csr(rows[keep], cols[keep], vals[keep], (self.num_gaussians, in_h * in_w))
