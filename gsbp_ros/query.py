"""Queries on a back-projected feature field (paper Sec. 3.2-3.4).

Everything here takes plain tensors (any device) and knows nothing about how the features
were made:

- :func:`similarity_segment`: positive / negative prompt embeddings -> selected Gaussians
  (Eq. 6 with the relevancy rule "best positive beats every negative").
- :func:`label_query_codes`: prompts that name labels of a label-map field -> their codes.
- :func:`point_prompt_queries`: 3D points -> the feature of the Gaussians there.
- :func:`pixel_prompt_points`: clicked pixels + a rendered depth map -> 3D points.
- :func:`knn_transfer`: affordance transfer by cosine kNN (Sec. 3.3).
- :func:`lift_label_votes`: masks lifted with known poses (back-projected one-hot votes).
- :func:`labels_to_selections`: per-Gaussian labels -> one :class:`Selection` per label.

The ``*_reference`` functions are slow, loop-based restatements of the same rules; the tests
check the fast paths against them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import QueryError
from gsbp_ros.results import Selection

#: Generic negatives for open-vocabulary queries (LERF's canonical phrases): a Gaussian is
#: selected only if the prompt describes it better than these say "something".
CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")

#: Longest accepted prompt: text encoders truncate far earlier (CLIP: 77 tokens), so a longer
#: prompt is almost certainly a mistake (a pasted file, a missing separator).
MAX_PROMPT_CHARS = 200

#: Rows per block when a [rows, M] similarity matrix is formed: bounds peak memory.
DEFAULT_CHUNK = 4096


# -- small helpers -----------------------------------------------------------------------------
def _tensor(x: Tensor | np.ndarray | Sequence, name: str) -> Tensor:
    try:
        return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise QueryError(f"{name} is not a numeric array: {exc}") from None


def _work_dtype(t: Tensor) -> torch.dtype:
    # float64 stays float64 (exact tests, CPU reference work); everything else (half, bf16,
    # ints) is computed in float32 so that dot products do not lose precision.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _matrix(
    x: Tensor | np.ndarray | Sequence,
    name: str,
    *,
    cols: int | None = None,
    allow_empty: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``x`` as a finite 2-D floating tensor [R, cols]; a 1-D vector becomes one row."""
    t = _tensor(x, name)
    if t.ndim == 1 and cols is not None and t.shape[0] == cols:
        t = t[None]
    if t.ndim == 2 and t.shape[0] == 0 and cols is not None and t.shape[1] in (0, cols):
        t = t.reshape(0, cols)
    if t.ndim != 2:
        raise QueryError(f"{name} must have shape [rows, channels], got {list(t.shape)}")
    if cols is not None and t.shape[1] != cols:
        raise QueryError(f"{name} has {t.shape[1]} channels but the features have {cols}")
    if t.shape[0] == 0 and not allow_empty:
        raise QueryError(f"{name} is empty")
    if not torch.is_floating_point(t):
        t = t.float()
    if device is not None or dtype is not None:
        t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise QueryError(f"{name} holds non-finite values (NaN or Inf)")
    return t


def _unit_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Rows scaled to unit length and their [R] norms; zero rows stay zero."""
    norms = torch.linalg.vector_norm(x, dim=1)
    tiny = torch.finfo(x.dtype).tiny
    return x / norms.clamp_min(tiny)[:, None], norms


def _unit_queries(q: Tensor, name: str) -> Tensor:
    qn, norms = _unit_rows(q)
    if bool((norms == 0).any()):
        row = int((norms == 0).nonzero()[0])
        raise QueryError(f"{name} query {row} is the zero vector; it matches nothing")
    return qn


# -- text / embedding segmentation -------------------------------------------------------------
def similarity_segment(
    features: Tensor,
    positive: Tensor,
    negative: Tensor | None = None,
    *,
    threshold: float = 0.0,
    seen: Tensor | None = None,
    chunk: int = 65536,
) -> tuple[Tensor, Tensor]:
    """Select the Gaussians whose best positive query beats every negative one.

    Cosine similarity (features and queries normalised). Gaussian k is selected when

        max_p cos(f_k, pos_p) > max_q cos(f_k, neg_q)      (always true with no negatives)
        and max_p cos(f_k, pos_p) > threshold               (only when threshold > 0)
        and k was seen (seen[k] and f_k != 0).

    Both comparisons are strict: a positive that ties a negative loses. A threshold <= 0 is
    no extra constraint (the negatives already decide).

    Args:
        features: [N, C] per-Gaussian features (expected or accumulated; scale is irrelevant).
        positive: [P, C] (or [C]) query embeddings, P >= 1, none zero.
        negative: [Q, C] query embeddings (Q may be 0) or None.
        threshold: absolute cosine threshold (paper Eq. 6), applied when > 0.
        seen: [N] bool (or weights, > 0 meaning seen): Gaussians never seen are not selected.
        chunk: rows per block (bounds temporary memory to chunk x C in the work dtype).

    Returns:
        mask: [N] bool on the features' device.
        scores: [N] best positive cosine (float32, float64 for float64 input); 0 where unseen.
    """
    if not math.isfinite(float(threshold)):
        raise QueryError(f"threshold must be a finite number, got {threshold}")
    feats = _tensor(features, "features")
    if feats.ndim != 2:
        raise QueryError(f"features must have shape [N, C], got {list(feats.shape)}")
    n, c = feats.shape
    dev, wd = feats.device, _work_dtype(feats)
    pos = _unit_queries(_matrix(positive, "positive", cols=c, device=dev, dtype=wd), "positive")
    if negative is None:
        negative = torch.zeros(0, c)
    neg = _matrix(negative, "negative", cols=c, allow_empty=True, device=dev, dtype=wd)
    neg = _unit_queries(neg, "negative")
    valid = _seen_mask(seen, n, dev)
    queries = torch.cat([pos, neg]).T  # [C, P+Q]: one matmul keeps equal queries bit-equal
    num_pos = pos.shape[0]

    mask = torch.zeros(n, dtype=torch.bool, device=dev)
    scores = torch.zeros(n, dtype=wd, device=dev)
    chunk = max(1, int(chunk))
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        block = feats[rows].to(wd)
        if not bool(torch.isfinite(block).all()):
            raise QueryError("features hold non-finite values (NaN or Inf)")
        # Divide the [B, P+Q] products rather than normalise the [B, C] block: one pass less.
        norms = torch.linalg.vector_norm(block, dim=1)
        sims = (block @ queries) / norms.clamp_min(torch.finfo(wd).tiny)[:, None]
        best = sims[:, :num_pos].max(dim=1).values
        seen_here = norms > 0 if valid is None else (norms > 0) & valid[rows]
        ok = seen_here.clone()
        if neg.shape[0]:
            ok &= best > sims[:, num_pos:].max(dim=1).values
        if threshold > 0:
            ok &= best > threshold
        mask[rows] = ok
        scores[rows] = torch.where(seen_here, best, torch.zeros_like(best))
    return mask, scores


def _seen_mask(seen: Tensor | None, n: int, device: torch.device) -> Tensor | None:
    if seen is None:
        return None
    s = _tensor(seen, "seen").to(device)
    if tuple(s.shape) != (n,):
        raise QueryError(f"seen must have shape [{n}], got {list(s.shape)}")
    return s if s.dtype == torch.bool else s > 0


def similarity_segment_reference(
    features: Tensor,
    positive: Tensor,
    negative: Tensor | None = None,
    *,
    threshold: float = 0.0,
    seen: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Loop-based restatement of :func:`similarity_segment` (float64, for tests)."""

    def unit(v: list[float]) -> list[float] | None:
        norm = math.sqrt(sum(x * x for x in v))
        return None if norm == 0 else [x / norm for x in v]

    feats = torch.as_tensor(features).double().cpu().tolist()
    pos = [unit(v) for v in torch.as_tensor(positive).double().reshape(-1, len(feats[0])).tolist()]
    neg = [] if negative is None else torch.as_tensor(negative).double().cpu().tolist()
    neg = [unit(v) for v in neg]
    seen_list = None if seen is None else [bool(s) for s in torch.as_tensor(seen).cpu().tolist()]
    mask, scores = [], []
    for k, f in enumerate(feats):
        fu = unit(f)
        if fu is None or (seen_list is not None and not seen_list[k]):
            mask.append(False)
            scores.append(0.0)
            continue
        best = max(sum(a * b for a, b in zip(fu, p)) for p in pos)
        selected = True
        for q in neg:
            if not best > sum(a * b for a, b in zip(fu, q)):
                selected = False
        if threshold > 0 and not best > threshold:
            selected = False
        mask.append(selected)
        scores.append(best)
    return torch.tensor(mask, dtype=torch.bool), torch.tensor(scores, dtype=torch.float64)


# -- prompts -----------------------------------------------------------------------------------
def _prompt_list(prompts: str | Sequence[str] | None, what: str) -> list[str]:
    if prompts is None:
        return []
    if isinstance(prompts, str):
        prompts = prompts.split(";")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise QueryError(f"{what} prompt {i} is a {type(p).__name__}, not text")
        p = p.strip()
        if len(p) > MAX_PROMPT_CHARS:
            raise QueryError(
                f"{what} prompt {i} is {len(p)} characters long (at most {MAX_PROMPT_CHARS}): "
                f"{p[:40]!r}..."
            )
        if p:
            out.append(p)
    return out


def validate_prompts(
    positive: str | Sequence[str],
    negative: str | Sequence[str] | None = (),
    *,
    add_canonical: bool = False,
) -> tuple[list[str], list[str]]:
    """Clean a text query.

    A string is split on ``;``. Prompts are stripped and empty ones dropped; duplicates are
    kept (harmless). A negative equal (case-insensitively) to a positive is dropped, because
    under the strict "positive beats every negative" rule it would make that positive
    unselectable (e.g. asking for "stuff" with the canonical negatives).

    Args:
        positive: what to select. At least one non-empty prompt.
        negative: what to reject (may be empty).
        add_canonical: append :data:`CANONICAL_NEGATIVES` (those not already present).

    Returns:
        (positives, negatives) as lists of stripped strings.
    """
    pos = _prompt_list(positive, "positive")
    neg = _prompt_list(negative, "negative")
    if not pos:
        raise QueryError("the query has no positive prompt: give at least one non-empty text")
    if add_canonical:
        neg += [c for c in CANONICAL_NEGATIVES if c.casefold() not in {n.casefold() for n in neg}]
    pos_keys = {p.casefold() for p in pos}
    return pos, [n for n in neg if n.casefold() not in pos_keys]


def label_key(name: str) -> str:
    """How label names and prompts are compared: case-folded, ``_`` as a space, runs of
    whitespace collapsed (``"Mug_Handle "`` and ``"mug  handle"`` are the same label)."""
    return " ".join(name.replace("_", " ").casefold().split())


def match_label(label_names: Sequence[str], prompt: str) -> int:
    """Index of the label a prompt names (see :func:`label_key`)."""
    key = label_key(prompt)
    for i, name in enumerate(label_names):
        if label_key(name) == key:
            return i
    known = ", ".join(label_names) if label_names else "(none)"
    raise QueryError(f"unknown label {prompt.strip()!r}; known labels: {known}")


def label_query_codes(
    label_names: Sequence[str],
    prompts: str | Sequence[str],
    *,
    code_table: Tensor | None = None,
) -> Tensor:
    """Query codes for a label-map field: each prompt must name one of its labels.

    Args:
        label_names: L label names (label-map value v > 0 is ``label_names[v - 1]``).
        prompts: P prompts (a string is split on ``;``).
        code_table: [L, C] code of each label when the field was built with non-one-hot
            (e.g. contrastive) codes; default: one-hot, C = L.

    Returns:
        [P, C] float32 codes (rows of ``code_table``, or one-hot rows).
    """
    names = list(label_names)
    keys = [label_key(n) for n in names]
    if len(set(keys)) != len(keys):
        dup = next(n for i, n in enumerate(names) if keys[i] in keys[:i])
        raise QueryError(f"label names are ambiguous: {dup!r} appears twice (ignoring case/_)")
    wanted = _prompt_list(prompts, "label")
    if not wanted:
        raise QueryError("no label named: give at least one non-empty label prompt")
    rows = [match_label(names, p) for p in wanted]
    if code_table is None:
        return torch.eye(len(names), dtype=torch.float32)[rows]
    table = _matrix(code_table, "code_table")
    if table.shape[0] != len(names):
        raise QueryError(f"code_table has {table.shape[0]} rows for {len(names)} labels")
    return table[torch.as_tensor(rows, device=table.device)].float()


# -- point and pixel prompts -------------------------------------------------------------------
def point_prompt_queries(
    means: Tensor,
    features: Tensor,
    points: Tensor,
    *,
    radius: float | None = None,
    k: int = 8,
    weights: Tensor | None = None,
) -> Tensor:
    """The feature of the Gaussians at each query point.

    Candidates are Gaussians with a non-zero feature (and weight > 0 when ``weights`` is
    given): unseen Gaussians carry no feature. For each point, its k nearest candidate means
    (within ``radius`` when given) are averaged: each feature is normalised first (so
    expected- and accumulated-mode fields behave alike), weighted by ``weights`` (e.g. Σw, the
    evidence behind each feature) or uniformly, and the average is normalised.

    Args:
        means: [N, 3] Gaussian centres.
        features: [N, C] per-Gaussian features.
        points: [P, 3] query points (same frame as ``means``).
        radius: only Gaussians closer than this (scene units); None = no limit.
        k: neighbours per point (clamped to the number of candidates).
        weights: [N] non-negative weights or None.

    Returns:
        [P, C] unit query features, in the work dtype of ``features``.
    """
    feats = _tensor(features, "features")
    if feats.ndim != 2:
        raise QueryError(f"features must have shape [N, C], got {list(feats.shape)}")
    dev, wd = feats.device, _work_dtype(feats)
    mu = _matrix(means, "means", cols=3, device=dev, dtype=wd)
    if mu.shape[0] != feats.shape[0]:
        raise QueryError(f"means has {mu.shape[0]} rows but features has {feats.shape[0]}")
    pts = _matrix(points, "points", cols=3, device=dev, dtype=wd)
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    if radius is not None and not (math.isfinite(radius) and radius > 0):
        raise QueryError(f"radius must be a positive number, got {radius}")
    fn, norms = _unit_rows(feats.to(wd))
    cand = norms > 0
    w = None
    if weights is not None:
        w = _tensor(weights, "weights").to(device=dev, dtype=wd)
        if tuple(w.shape) != (feats.shape[0],) or bool((w < 0).any()):
            raise QueryError(f"weights must be [{feats.shape[0]}] and non-negative")
        cand &= w > 0
    idx_c = cand.nonzero().flatten()
    if idx_c.numel() == 0:
        raise QueryError("no Gaussian has a feature (nothing was seen); cannot answer points")
    kk = min(int(k), idx_c.numel())
    mu_c = mu[idx_c]
    out = torch.empty(pts.shape[0], feats.shape[1], dtype=wd, device=dev)
    # Distances in blocks of points so that memory stays O(block x N).
    block = max(1, (1 << 24) // idx_c.numel())
    for s in range(0, pts.shape[0], block):
        # Differences, not |a|^2 + |b|^2 - 2ab (cdist's default beyond 25 rows): in float32,
        # a scene 1000 units from the origin would lose every millimetre to cancellation.
        d = torch.cdist(pts[s : s + block], mu_c, compute_mode="donot_use_mm_for_euclid_dist")
        dist, nb = d.topk(kk, dim=1, largest=False)
        for r in range(d.shape[0]):
            keep = dist[r] <= radius if radius is not None else torch.ones_like(dist[r], dtype=bool)
            if not bool(keep.any()):
                p = pts[s + r].tolist()
                raise QueryError(
                    f"point {s + r} ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) has no seen Gaussian "
                    f"within radius {radius:g}; the nearest is {float(dist[r, 0]):.3g} away"
                )
            g = idx_c[nb[r, keep]]
            wr = w[g] if w is not None else torch.ones(g.numel(), dtype=wd, device=dev)
            avg = (wr[:, None] * fn[g]).sum(dim=0)
            norm = torch.linalg.vector_norm(avg)
            if float(norm) <= 1e-12 * float(wr.sum()):
                raise QueryError(
                    f"point {s + r}: the features of its nearest Gaussians cancel out; "
                    f"pick a point on a single surface or use a larger k"
                )
            out[s + r] = avg / norm
    return out


def pixel_prompt_points(
    camera: Camera,
    pixels: Tensor | np.ndarray | Sequence,
    depth: Tensor,
    *,
    alpha: Tensor | None = None,
    min_alpha: float = 0.5,
) -> Tensor:
    """World points under clicked pixels, from a rendered depth map.

    Args:
        camera: the view the pixels were clicked in.
        pixels: [P, 2] integer pixel indices (column u, row v); the ray passes through the
            pixel centre (u + 0.5, v + 0.5), the convention of :class:`Camera`.
        depth: [H, W] z-depth along the optical axis (e.g. Σ w z / Σ w), H x W = camera size.
        alpha: [H, W] accumulated opacity; pixels below ``min_alpha`` hit nothing.
        min_alpha: opacity needed for a pixel to count as on a surface.

    Returns:
        [P, 3] float32 world points.
    """
    px = _tensor(pixels, "pixels")
    if px.ndim == 1 and px.shape[0] == 2:
        px = px[None]
    if px.ndim != 2 or px.shape[1] != 2 or px.shape[0] == 0:
        raise QueryError(f"pixels must have shape [P, 2] with P >= 1, got {list(px.shape)}")
    dep = _tensor(depth, "depth").float().cpu()
    if tuple(dep.shape) != (camera.height, camera.width):
        raise QueryError(
            f"depth is {list(dep.shape)} but camera {camera.name!r} is "
            f"{camera.height}x{camera.width}"
        )
    a = None
    if alpha is not None:
        a = _tensor(alpha, "alpha").float().cpu()
        if a.shape != dep.shape:
            raise QueryError(f"alpha is {list(a.shape)} but depth is {list(dep.shape)}")
    K, c2w = camera.K.double().cpu(), camera.cam_to_world.double().cpu()
    out = []
    for i, (u, v) in enumerate(px.cpu().tolist()):
        if not (math.isfinite(u) and math.isfinite(v)) or u != int(u) or v != int(v):
            raise QueryError(f"pixel {i} ({u}, {v}) is not an integer pixel index")
        u, v = int(u), int(v)
        if not (0 <= u < camera.width and 0 <= v < camera.height):
            raise QueryError(
                f"pixel {i} ({u}, {v}) lies outside the {camera.width}x{camera.height} image"
            )
        z = float(dep[v, u])
        if (a is not None and float(a[v, u]) < min_alpha) or not (math.isfinite(z) and z > 0):
            raise QueryError(f"pixel {i} ({u}, {v}) shows no surface (empty or transparent)")
        x = (u + 0.5 - float(K[0, 2])) / float(K[0, 0]) * z
        y = (v + 0.5 - float(K[1, 2])) / float(K[1, 1]) * z
        out.append(c2w[:3, :3] @ torch.tensor([x, y, z], dtype=torch.float64) + c2w[:3, 3])
    return torch.stack(out).float()


# -- affordance transfer -----------------------------------------------------------------------
def _check_labels(source_labels: Tensor, m: int) -> Tensor:
    lab = _tensor(source_labels, "source_labels")
    if tuple(lab.shape) != (m,):
        raise QueryError(f"source_labels must have shape [{m}], got {list(lab.shape)}")
    if torch.is_floating_point(lab) and not bool((lab == lab.round()).all()):
        raise QueryError("source_labels must be integers")
    lab = lab.long()
    if m and int(lab.min()) < -1:
        raise QueryError(f"source_labels must be >= -1 (background), got {int(lab.min())}")
    return lab


def knn_transfer(
    target: Tensor,
    source: Tensor,
    source_labels: Tensor,
    *,
    k: int = 5,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """Label every target feature by a cosine kNN vote among labelled source features.

    Rules (shared with :func:`knn_transfer_reference`):

    - neighbours: the k source rows with the highest cosine similarity; among exactly equal
      similarities the lower source index wins. Zero source rows carry no direction and are
      ignored; k is clamped to the number of remaining rows.
    - vote: the label with the most neighbours; background (-1) is a label like any other.
      Ties on the count go to the label whose neighbours have the larger summed similarity,
      and if that ties too, to the smaller label value.
    - confidence: the winner's vote share (count / k).
    - a zero target row (a Gaussian never seen) gets label -1 and confidence 0.

    Memory: one [chunk, M] similarity block at a time.

    Args:
        target: [N, C] per-Gaussian features.
        source: [M, C] features of annotated source pixels/patches.
        source_labels: [M] int, -1 = background, otherwise a label index.
        k: neighbours (>= 1).
        chunk: target rows per block.

    Returns:
        labels: [N] int64 in [-1, L); confidence: [N] float32 in [0, 1].
    """
    if int(k) < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    tgt = _tensor(target, "target")
    if tgt.ndim != 2:
        raise QueryError(f"target must have shape [N, C], got {list(tgt.shape)}")
    dev, wd = tgt.device, _work_dtype(tgt)
    src = _matrix(source, "source", cols=tgt.shape[1], device=dev, dtype=wd)
    lab = _check_labels(source_labels, src.shape[0]).to(dev)
    sn, snorm = _unit_rows(src)
    keep = snorm > 0
    if not bool(keep.any()):
        raise QueryError("every source feature is zero; nothing to transfer")
    sn, lab = sn[keep], lab[keep]
    kk = min(int(k), sn.shape[0])
    # One vote slot per label value present, in ascending order (so background -1 first and
    # "smaller label wins" is "first slot wins"): memory follows the number of labels, not
    # the largest label value.
    values, slots = torch.unique(lab, sorted=True, return_inverse=True)
    num_slots = values.numel()

    n = tgt.shape[0]
    labels = torch.full((n,), -1, dtype=torch.long, device=dev)
    conf = torch.zeros(n, dtype=torch.float32, device=dev)
    chunk = max(1, int(chunk))
    for s in range(0, n, chunk):
        block = tgt[s : s + chunk].to(wd)
        if not bool(torch.isfinite(block).all()):
            raise QueryError("target holds non-finite values (NaN or Inf)")
        tn, tnorm = _unit_rows(block)
        sims = tn @ sn.T  # [B, M]
        vals, nb = _topk_stable(sims, kk)
        nb_slots = slots[nb]  # [B, k]
        counts = torch.zeros(sims.shape[0], num_slots, dtype=torch.long, device=dev)
        counts.scatter_add_(1, nb_slots, torch.ones_like(nb_slots))
        simsum = torch.zeros(sims.shape[0], num_slots, dtype=torch.float64, device=dev)
        simsum.scatter_add_(1, nb_slots, vals.double())
        top = counts == counts.max(dim=1, keepdim=True).values
        masked = torch.where(top, simsum, torch.full_like(simsum, -math.inf))
        top &= masked == masked.max(dim=1, keepdim=True).values
        win = top.to(torch.int8).argmax(dim=1)  # first True = smallest label value
        seen = tnorm > 0
        labels[s : s + chunk] = torch.where(seen, values[win], torch.full_like(win, -1))
        share = counts.gather(1, win[:, None])[:, 0].float() / kk
        conf[s : s + chunk] = torch.where(seen, share, torch.zeros_like(share))
    return labels, conf


def _topk_stable(sims: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """topk by value, ties at the k-th place resolved toward the lower column index.

    ``torch.topk`` gives no order among equal values; a stable sort does, but costs
    O(M log M) per row, so it is only used for rows whose k-th value is tied.
    """
    vals, idx = sims.topk(k, dim=1)
    tied = (sims >= vals[:, -1:]).sum(dim=1) > k
    if bool(tied.any()):
        rows = tied.nonzero().flatten()
        order = torch.sort(sims[rows], dim=1, descending=True, stable=True).indices[:, :k]
        idx[rows] = order
        vals[rows] = sims[rows].gather(1, order)
    return vals, idx


def knn_transfer_reference(
    target: Tensor, source: Tensor, source_labels: Tensor, *, k: int = 5
) -> tuple[Tensor, Tensor]:
    """Brute-force restatement of :func:`knn_transfer` (float64 numpy, one row at a time)."""
    if int(k) < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    t = torch.as_tensor(target).double().cpu().numpy()
    s = torch.as_tensor(source).double().cpu().numpy()
    lab = torch.as_tensor(source_labels).long().cpu().numpy()
    s_norm = np.linalg.norm(s, axis=1)
    s, lab = s[s_norm > 0] / s_norm[s_norm > 0, None], lab[s_norm > 0]
    kk = min(int(k), len(s))
    labels = np.full(len(t), -1, dtype=np.int64)
    conf = np.zeros(len(t), dtype=np.float32)
    for i, row in enumerate(t):
        norm = np.linalg.norm(row)
        if norm == 0:
            continue
        sims = s @ (row / norm)
        order = sorted(range(len(s)), key=lambda j: (-sims[j], j))[:kk]
        count: dict[int, int] = {}
        total: dict[int, float] = {}
        for j in order:  # descending similarity, as the fast path sums them
            count[int(lab[j])] = count.get(int(lab[j]), 0) + 1
            total[int(lab[j])] = total.get(int(lab[j]), 0.0) + float(sims[j])
        best = max(count, key=lambda lb: (count[lb], total[lb], -lb))
        labels[i], conf[i] = best, count[best] / kk
    return torch.from_numpy(labels), torch.from_numpy(conf)


def lift_label_votes(
    votes: Tensor, weight: Tensor, *, min_share: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Labels from masks lifted with known poses (mask back-projection, paper Sec. 3.4).

    ``votes[k, l]`` = Σ_views Σ_pixels w_k(p) [mask(p) = l] (accumulated back-projection of
    one-hot masks) and ``weight[k]`` = Σ_views Σ_pixels w_k(p) over the same views. The rest of
    the weight, ``weight - Σ_l votes``, fell on unlabelled pixels: it is the background vote.
    The label is the argmax over [background, label 0, ..., label L-1] (ties go to the earlier
    entry, so to background first); confidence is its share of max(weight, Σ_l votes).
    Gaussians with no weight, or whose share is below ``min_share``, are background (-1).

    Args:
        votes: [N, L] non-negative accumulated votes.
        weight: [N] total compositing weight of each Gaussian over the annotated views.
        min_share: minimum share to accept a label (e.g. 0.5 for a strict majority).

    Returns:
        labels: [N] int64 in [-1, L); confidence: [N] float32 in [0, 1] (0 where unseen).
    """
    v = _matrix(votes, "votes", allow_empty=True)
    w = _tensor(weight, "weight").to(device=v.device, dtype=v.dtype)
    if tuple(w.shape) != (v.shape[0],):
        raise QueryError(f"weight must have shape [{v.shape[0]}], got {list(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((v < 0).any()):
        raise QueryError("votes and weight must be finite and non-negative")
    labelled = v.sum(dim=1)
    total = torch.maximum(w, labelled)
    background = (w - labelled).clamp_min(0)
    scores = torch.cat([background[:, None], v], dim=1)
    best, arg = scores.max(dim=1)  # max returns the first maximum: background wins ties
    share = torch.where(total > 0, best / total.clamp_min(torch.finfo(v.dtype).tiny), 0 * best)
    labels = arg - 1
    labels[(total <= 0) | (share < min_share)] = -1
    conf = torch.where(total > 0, share, torch.zeros_like(share)).clamp(0, 1)
    return labels.long(), conf.float()


# -- results -----------------------------------------------------------------------------------
def _numpy(x: Tensor | np.ndarray | Sequence) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def selection_from_indices(
    name: str,
    indices: np.ndarray,
    scores: np.ndarray,
    means: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    camera_centers: np.ndarray | None = None,
    scene_center: np.ndarray | None = None,
    view_points: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Selection:
    """A :class:`Selection` with its region summary (None when empty).

    Args:
        indices: [M] indices into the scene. scores: [M]. means: [N, 3] all Gaussian centres.
        normals: [M, 3] normals of the selected Gaussians (for the approach direction).
        view_points: [N, 3] where the cameras that saw each Gaussian stood
            (:attr:`gsbp_ros.field.FeatureField.viewpoints`), to orient the normals.
        weights: [N] geometry weight of every Gaussian (:func:`gsbp_ros.regions.region_weights`:
            opacity x back-projection weight), so that floaters count little.
    """
    from gsbp_ros.regions import summarize_region

    idx = np.asarray(indices, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    idx, sc = idx[order], np.asarray(scores, dtype=np.float32)[order]
    summary = None
    if idx.size:
        summary = summarize_region(
            np.asarray(means, dtype=np.float64)[idx],
            normals=None if normals is None else np.asarray(normals)[order],
            camera_centers=camera_centers,
            scene_center=scene_center,
            view_points=None if view_points is None else np.asarray(view_points)[idx],
            weights=None if weights is None else np.asarray(weights, dtype=np.float64)[idx],
        )
    info: dict[str, float | str] = {"count": float(idx.size)}
    if idx.size:
        info["mean_score"] = float(sc.mean())
        info["trimmed"] = float(summary.num_trimmed)
    return Selection(name=name, indices=idx, scores=sc, summary=summary, info=info)


def labels_to_selections(
    labels: Tensor | np.ndarray,
    confidence: Tensor | np.ndarray,
    label_names: Sequence[str],
    means: Tensor | np.ndarray,
    *,
    min_confidence: float = 0.0,
    normals_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    camera_centers: np.ndarray | None = None,
    view_points: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> list[Selection]:
    """One :class:`Selection` per label that holds at least one Gaussian, in label order.

    A Gaussian belongs to label l when ``labels == l`` and ``confidence >= min_confidence``.
    Scores are the confidences.

    Args:
        labels: [N] int in [-1, L). confidence: [N] in [0, 1].
        label_names: L names. means: [N, 3] Gaussian centres.
        normals_fn: maps [M] indices to [M, 3] Gaussian normals (e.g. from scales and quats,
            :func:`gsbp_ros.regions.gaussian_normals`), enabling the approach direction.
        camera_centers: [V, 3] to orient the normals (see
            :func:`gsbp_ros.regions.orient_normals` for the order of the references).
        view_points, weights: [N, 3], [N] (see :func:`selection_from_indices`).
    """
    lab = _numpy(labels).astype(np.int64).reshape(-1)
    conf = _numpy(confidence).astype(np.float32).reshape(-1)
    mu = _numpy(means).astype(np.float64)
    if conf.shape != lab.shape or mu.shape != (lab.shape[0], 3):
        raise QueryError(
            f"labels {list(lab.shape)}, confidence {list(conf.shape)} and means "
            f"{list(mu.shape)} must describe the same N Gaussians"
        )
    names = list(label_names)
    if lab.size and (lab.min() < -1 or lab.max() >= len(names)):
        raise QueryError(f"labels must lie in [-1, {len(names)}), got [{lab.min()}, {lab.max()}]")
    scene_center = mu.mean(axis=0) if mu.size else None
    out = []
    for i, name in enumerate(names):
        idx = np.flatnonzero((lab == i) & (conf >= min_confidence))
        if idx.size == 0:
            continue
        normals = normals_fn(idx) if normals_fn is not None else None
        sel = selection_from_indices(
            name,
            idx,
            conf[idx],
            mu,
            normals=normals,
            camera_centers=camera_centers,
            scene_center=scene_center,
            view_points=view_points,
            weights=weights,
        )
        sel.info["label_index"] = float(i)
        out.append(sel)
    return out
