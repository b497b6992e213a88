"""The CPU engine: gsplat's exact weights from compiled loops, in bounded memory.

Same weights as the pure-torch engine (:mod:`gsbp_ros.raster.torch_engine`, its readable
twin) and the brute-force reference, computed the way a CPU likes it:

1. project every Gaussian with a compiled per-Gaussian loop (gsplat's EWA rules, float32;
   :func:`project_gaussians_numba`) and sort the valid ones front to back (ties by index);
2. split the image into bands of pixel rows. Per band, one compiled loop walks the
   Gaussians in depth order over the pixels of their alpha ellipse (row spans, not tiles:
   16x16 tiles evaluate 40-80x more alphas on a CPU) and composites each pixel as gsplat
   does, float32 T, exclusive stop at ``T <= 1e-4``. Bands own disjoint pixels, so they run
   concurrently (``nogil`` kernels on a thread pool); the pairs come out grouped by
   Gaussian, W^T's natural order, with no sort;
3. back-projection folds the bilinear upsampling of the feature map into each Gaussian's
   run of pairs (no [H, W, C] tensor), counting-sorts the result into a CSR ``W^T Up`` and
   adds its product with the map straight into the caller's [N, C] float32 accumulator
   (``addmm_``: the sparse BLAS writes in place; no per-view [N, C] temporary).

Memory per view is bounded whatever the resolution: the candidate pairs of each row are
counted first (an exact upper bound of the pairs kept), and rows are grouped so that a group
holds at most ``pair_budget`` candidates. A view that fits keeps its pairs (every map of the
view reuses them); a larger view is recomputed group by group for each pass.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.bilinear import linear_taps
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.projection import Projected
from gsbp_ros.raster.sparse import csr
from gsbp_ros.raster.weights import SparseViewWeights, ViewWeights
from gsbp_ros.scene import GaussianScene

DEFAULT_PAIR_BUDGET = 1 << 24
"""Candidate pairs held at once (12 bytes each when kept: at most ~200 MB per view)."""


class _Pool:
    """The worker threads of the kernels, shared by every view (created on first use)."""

    lock = threading.Lock()
    executor: ThreadPoolExecutor | None = None
    size = 0


@functools.cache
def numba_status() -> str:
    """'' when the compiled kernels import, else why not (one line)."""
    try:
        from gsbp_ros.raster import numba_kernels  # noqa: F401
    except Exception as exc:  # ImportError, or numba failing to initialise its LLVM
        return f"{type(exc).__name__}: {exc}"
    return ""


def numba_available() -> bool:
    return not numba_status()


def _kernels():
    from gsbp_ros.raster import numba_kernels

    return numba_kernels


def engine_threads() -> int:
    """Threads of the compiled kernels: torch's intra-op thread count (OMP_NUM_THREADS)."""
    return max(1, torch.get_num_threads())


def run_tasks(tasks: Sequence[Callable[[], object]]) -> list[object]:
    """Run kernel calls (they release the GIL) on the shared pool; results in task order."""
    threads = engine_threads()
    if threads == 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    with _Pool.lock:
        if _Pool.executor is None or threads != _Pool.size:
            if _Pool.executor is not None:
                _Pool.executor.shutdown(wait=False)
            _Pool.executor = ThreadPoolExecutor(threads, thread_name_prefix="gsbp-raster")
            _Pool.size = threads
        pool = _Pool.executor
    return [f.result() for f in [pool.submit(t) for t in tasks]]


def _splits(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, max(1, parts) + 1).round().astype(np.int64).tolist()
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


@torch.no_grad()
def project_gaussians_numba(
    scene: GaussianScene, camera: Camera, *, options: RasterOptions = DEFAULT_RASTER_OPTIONS
) -> Projected:
    """:func:`gsbp_ros.raster.projection.project_gaussians` by a compiled loop (CPU).

    Same rules and float32 arithmetic per Gaussian; the torch version evaluates the matrix
    products in another order, so the two agree to float32 rounding, not bit for bit.
    """
    k = _kernels()
    n = scene.num_gaussians
    means = _f32(scene.means)
    quats = _f32(scene.quats)
    log_scales = _f32(scene.log_scales)
    logits = _f32(scene.logit_opacities)
    view = _f32(camera.world_to_cam)
    K = camera.K.detach().to("cpu", torch.float64)
    intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], dtype=np.float32)
    out = {
        "means2d": np.empty((n, 2), np.float32),
        "conics": np.empty((n, 3), np.float32),
        "covars2d": np.empty((n, 3), np.float32),
        "depths": np.empty(n, np.float32),
        "opacities": np.empty(n, np.float32),
        "radii": np.empty((n, 2), np.int32),
        "valid": np.empty(n, np.bool_),
    }
    width, height = int(camera.width), int(camera.height)
    f32 = np.float32
    run_tasks(
        [
            functools.partial(
                k.project,
                means,
                quats,
                log_scales,
                logits,
                view,
                intr,
                width,
                height,
                f32(options.near_plane),
                f32(min(options.far_plane, 3e38)),
                f32(options.eps2d),
                options.rasterize_mode == "antialiased",
                lo,
                hi,
                *out.values(),
            )
            for lo, hi in _splits(n, engine_threads())
        ]
    )
    return Projected(
        **{name: torch.from_numpy(a) for name, a in out.items()}, width=width, height=height
    )


@dataclass
class _Pairs:
    """The kept pairs of some bands: segment b is ``[starts[b], starts[b] + counts[b])``."""

    g: np.ndarray  # int32 Gaussian index
    p: np.ndarray  # int32 pixel index
    w: np.ndarray  # float32 weight
    starts: np.ndarray  # int64 [B]
    counts: np.ndarray  # int64 [B]

    @property
    def nnz(self) -> int:
        return int(self.counts.sum())


class NumbaViewWeights(ViewWeights):
    """One view's weights from the compiled CPU engine (see the module docstring).

    Attributes:
        candidates: candidate pairs of the view (an upper bound of its non-zero weights).
        fits_budget: the view's pairs are kept between calls (else recomputed per pass).
    """

    def __init__(self, proj: Projected, *, pair_budget: int = DEFAULT_PAIR_BUDGET) -> None:
        if pair_budget < 1:
            raise ValueError(f"pair_budget must be >= 1, got {pair_budget}")
        self._k = _kernels()
        self.width, self.height = int(proj.width), int(proj.height)
        self.num_gaussians = proj.num_gaussians
        self.device = torch.device("cpu")
        self.pair_budget = int(pair_budget)
        order = self._k.depth_order(proj.valid.numpy(), _f32(proj.depths))
        m = order.shape[0]
        ints = [np.empty(m, np.int32) for _ in range(3)]  # gid, y0, y1
        floats = [np.empty(m, np.float32) for _ in range(6)]  # mx, my, ca, cb, cc, opac
        splats = self._k.Splats(*ints, *floats, np.empty(m, np.float64))  # e2
        kept = self._k.prepare(
            order,
            _f32(proj.means2d),
            _f32(proj.conics),
            _f32(proj.covars2d),
            _f32(proj.opacities),
            self.width,
            self.height,
            splats,
        )
        self._splats = self._k.Splats(*(a[:kept] for a in splats))
        rows = self._k.row_candidates(self._splats, self.width, self.height)
        self.candidates = int(rows.sum())
        self._bands, self._groups = plan_bands(rows, engine_threads(), self.pair_budget)
        self._kept: _Pairs | None = None
        self._folded: dict[tuple[int, int], Tensor] = {}
        self._partial = np.zeros(self.num_gaussians, dtype=np.float64)
        self._summed: set[int] = set()
        self._weight_sum = self._partial if not self._groups else None

    # -- pairs --------------------------------------------------------------------------------
    @property
    def fits_budget(self) -> bool:
        return len(self._groups) <= 1

    @property
    def num_groups(self) -> int:
        return len(self._groups)

    def _compute(self, group: Sequence[int]) -> _Pairs:
        """Composite the bands of one group (concurrently); their kept pairs."""
        bands = [self._bands[b] for b in group]
        sizes = np.array([c for _, _, c in bands], dtype=np.int64)
        starts = np.zeros(len(bands), dtype=np.int64)
        starts[1:] = np.cumsum(sizes)[:-1]
        total = int(sizes.sum())
        # np.empty: only the pages of kept pairs are ever touched (kept <= candidates).
        g = np.empty(total, dtype=np.int32)
        p = np.empty(total, dtype=np.int32)
        w = np.empty(total, dtype=np.float32)
        n_pix = self.width * self.height
        trans = np.ones(n_pix, dtype=np.float32)
        done = np.zeros(n_pix, dtype=np.bool_)
        k = self._k
        tasks = [
            functools.partial(
                k.band_pairs,
                lo,
                hi,
                self._splats,
                self.width,
                trans,
                done,
                g,
                p,
                w,
                int(starts[i]),
            )
            for i, (lo, hi, _) in enumerate(bands)
        ]
        counts = np.array(run_tasks(tasks), dtype=np.int64)
        return _Pairs(g, p, w, starts, counts)

    def _passes(self) -> Iterator[_Pairs]:
        """The view's pairs, group by group (kept when they fit the budget).

        The first complete pass also sums each Gaussian's weights (``weight_sum``).
        """
        if self._kept is not None:
            yield self._kept
            return
        for i, group in enumerate(self._groups):
            pairs = self._compute(group)
            if self._weight_sum is None and i not in self._summed:
                self._k.weight_sums(pairs.g, pairs.w, pairs.starts, pairs.counts, self._partial)
                self._summed.add(i)
                if len(self._summed) == len(self._groups):
                    self._weight_sum = self._partial
            if self.fits_budget:
                self._kept = pairs
            yield pairs

    def to_sparse(self) -> SparseViewWeights:
        """The explicit sparse form (pixel-major, front to back within a pixel)."""
        gs, ps, ws = [], [], []
        for pairs in self._passes():
            for s, c in zip(pairs.starts.tolist(), pairs.counts.tolist()):
                gs.append(torch.from_numpy(pairs.g[s : s + c].astype(np.int64)))
                ps.append(torch.from_numpy(pairs.p[s : s + c].astype(np.int64)))
                ws.append(torch.from_numpy(pairs.w[s : s + c].copy()))
        g = torch.cat(gs) if gs else torch.zeros(0, dtype=torch.int64)
        p = torch.cat(ps) if ps else torch.zeros(0, dtype=torch.int64)
        w = torch.cat(ws) if ws else torch.zeros(0, dtype=torch.float32)
        # Bands are Gaussian-major in depth order: a stable sort by pixel gives each pixel's
        # pairs front to back.
        p, perm = torch.sort(p, stable=True)
        return SparseViewWeights(
            g[perm],
            p,
            w[perm],
            width=self.width,
            height=self.height,
            num_gaussians=self.num_gaussians,
        )

    @property
    def nnz(self) -> int:
        return sum(pairs.nnz for pairs in self._passes())

    # -- the ViewWeights interface ----------------------------------------------------------------
    def render(self, values: Tensor) -> Tensor:
        self._check_values(values)
        vals = _f32(values)
        out = np.zeros((self.width * self.height, vals.shape[1]), dtype=np.float32)
        k = self._k
        for pairs in self._passes():
            run_tasks(
                [
                    functools.partial(k.render_segment, pairs.g, pairs.p, pairs.w, s, c, vals, out)
                    for s, c in zip(pairs.starts.tolist(), pairs.counts.tolist())
                ]
            )
        return torch.from_numpy(out).reshape(self.height, self.width, -1)

    def alpha(self) -> Tensor:
        out = np.zeros(self.width * self.height, dtype=np.float32)
        for pairs in self._passes():
            for s, c in zip(pairs.starts.tolist(), pairs.counts.tolist()):
                self._k.alpha_segment(pairs.p, pairs.w, s, c, out)
        return torch.from_numpy(out).reshape(self.height, self.width)

    def weight_sum(self) -> Tensor:
        if self._weight_sum is None:
            for _ in self._passes():
                pass
        return torch.from_numpy(self._weight_sum.astype(np.float32))

    def backproject(self, features: Tensor) -> Tensor:
        self._check_features(features)
        out = torch.zeros(self.num_gaussians, features.shape[2], dtype=torch.float32)
        self.backproject_into([features], [out])
        return out

    def backproject_into(self, maps: Sequence[Tensor], sums: Sequence[Tensor]) -> None:
        maps, sums = list(maps), list(sums)
        if len(maps) != len(sums):
            raise ValueError(f"got {len(maps)} feature maps but {len(sums)} accumulators")
        flats = []
        for fmap, out in zip(maps, sums):
            self._check_features(fmap)
            c = fmap.shape[2]
            if (
                out.shape != (self.num_gaussians, c)
                or out.dtype != torch.float32
                or out.device.type != "cpu"
            ):
                raise ValueError(
                    f"accumulator must be a CPU float32 [{self.num_gaussians}, {c}] tensor, "
                    f"got {out.dtype} {list(out.shape)} on {out.device}"
                )
            flats.append(torch.from_numpy(_f32(fmap)).reshape(-1, c))
        sizes = sorted({(int(m.shape[0]), int(m.shape[1])) for m in maps})
        for pairs in self._passes():
            for size in sizes:
                mat = self._folded_matrix(pairs, size)
                for fmap, flat, out in zip(maps, flats, sums):
                    if (fmap.shape[0], fmap.shape[1]) == size:
                        out.addmm_(mat, flat)

    # -- back-projection matrices ---------------------------------------------------------------
    def _folded_matrix(self, pairs: _Pairs, size: tuple[int, int]) -> Tensor:
        """[N, H'*W'] CSR ``W^T Up`` of these pairs for an H' x W' map; cached per size when
        the view's pairs are kept (every map of that size reuses it)."""
        if pairs is self._kept and size in self._folded:
            return self._folded[size]
        in_h, in_w = size
        if size == (self.height, self.width):
            entries = (pairs.g, pairs.p, pairs.w, pairs.starts, pairs.counts)
        else:
            entries = self._fold(pairs, in_h, in_w)
        mat = self._csr(*entries, n_cols=in_h * in_w)
        if pairs is self._kept:
            self._folded[size] = mat
        return mat

    def _fold(self, pairs: _Pairs, in_h: int, in_w: int):
        """Entries ``(g, s, v)`` of ``W^T Up``, segmented like the pairs."""
        y0, y1, wy0, wy1 = (t.numpy() for t in linear_taps(self.height, in_h))
        x0, x1, wx0, wx1 = (t.numpy() for t in linear_taps(self.width, in_w))
        i32 = np.int32
        taps = self._k.Taps(
            y0.astype(i32), y1.astype(i32), wy0, wy1, x0.astype(i32), x1.astype(i32), wx0, wx1,
            in_w,
        )  # fmt: skip
        cap = 4 * pairs.counts  # at most 4 taps per pair
        starts = np.zeros_like(cap)
        starts[1:] = np.cumsum(cap)[:-1]
        total = int(cap.sum())
        og = np.empty(total, dtype=np.int32)
        os_ = np.empty(total, dtype=np.int32)
        ov = np.empty(total, dtype=np.float32)
        k = self._k
        local = threading.local()

        def band(b: int) -> Callable[[], int]:
            def run() -> int:
                if not hasattr(local, "scratch"):  # one zeroed scratch per worker thread
                    local.scratch = np.zeros(in_h * in_w, dtype=np.float64)
                    local.touched = np.empty(in_h * in_w, dtype=np.int32)
                return k.fold_band(
                    pairs.g, pairs.p, pairs.w, int(pairs.starts[b]), int(pairs.counts[b]),
                    self.width, taps, local.scratch, local.touched, og, os_, ov, int(starts[b]),
                )  # fmt: skip

            return run

        counts = np.array(run_tasks([band(b) for b in range(len(cap))]), dtype=np.int64)
        return og, os_, ov, starts, counts

    def _csr(self, g, s, v, starts, counts, *, n_cols: int) -> Tensor:
        """[N, n_cols] CSR matrix of segmented entries (rows by a counting sort)."""
        nnz = int(counts.sum())
        index = np.int32 if max(nnz, n_cols, self.num_gaussians) < 2**31 else np.int64
        crow = np.zeros(self.num_gaussians + 1, dtype=index)
        col = np.empty(nnz, dtype=index)
        val = np.empty(nnz, dtype=np.float32)
        self._k.segments_to_csr(g, s, v, starts, counts, self.num_gaussians, crow, col, val)
        return csr(
            torch.from_numpy(crow),
            torch.from_numpy(col),
            torch.from_numpy(val),
            (self.num_gaussians, n_cols),
        )


def _f32(x: Tensor) -> np.ndarray:
    """Contiguous float32 numpy view (or copy) of a tensor, on the CPU."""
    return np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy())


def plan_bands(
    row_candidates: np.ndarray, threads: int, pair_budget: int
) -> tuple[list[tuple[int, int, int]], list[list[int]]]:
    """Row bands and groups of bands for a view.

    Args:
        row_candidates: [H] candidate pairs per pixel row.
        threads: concurrent bands wanted per group.
        pair_budget: at most this many candidates per group (a single row above it still
            forms its own band and group).

    Returns:
        ``(bands, groups)``: bands ``(row_lo, row_hi, candidates)`` covering every row with
        candidates, about ``4 * threads`` per group for load balance; groups are lists of
        band indices whose candidates sum to at most ``pair_budget``.
    """
    height = int(row_candidates.shape[0])
    total = int(row_candidates.sum())
    if total == 0:
        return [], []
    per_group = min(total, pair_budget)
    target = max(1, min(pair_budget, -(-per_group // (4 * threads))))
    bands: list[tuple[int, int, int]] = []
    lo, acc = 0, 0
    for y in range(height):
        c = int(row_candidates[y])
        if acc and acc + c > target:
            bands.append((lo, y, acc))
            lo, acc = y, 0
        acc += c
    bands.append((lo, height, acc))
    bands = [b for b in bands if b[2] > 0]
    groups: list[list[int]] = []
    acc = 0
    for i, (_, _, c) in enumerate(bands):
        if not groups or acc + c > pair_budget:
            groups.append([])
            acc = 0
        groups[-1].append(i)
        acc += c
    return bands, groups


@torch.no_grad()
def compute_numba_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    pair_budget: int = DEFAULT_PAIR_BUDGET,
) -> NumbaViewWeights:
    """The compositing weights of one view by the compiled CPU engine.

    Args:
        scene: the splats (on the CPU).
        camera: the view.
        options: raster settings.
        pair_budget: candidate pairs held at once (memory bound per view).

    Returns:
        :class:`NumbaViewWeights`.
    """
    if scene.device.type != "cpu":
        raise ValueError(f"the numba engine runs on the CPU, the scene is on {scene.device}")
    proj = project_gaussians_numba(scene, camera.to_device("cpu"), options=options)
    return NumbaViewWeights(proj, pair_budget=pair_budget)
