"""Query library: segmentation, prompts, kNN transfer, mask lifting, selections, 2D overlays.

Oracles are exact: loop-based reference implementations, and "dyadic" data (unit vectors
with entries in {0, ±1/2, ±1}) on which every cosine is an exact binary fraction, so ties
and threshold edges are real ties in any summation order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gsbp_ros.camera import Camera
from gsbp_ros.errors import QueryError
from gsbp_ros.overlay import (
    BACKGROUND_COLOR,
    PALETTE,
    color_for,
    mask_2d,
    overlay_labels,
    overlay_mask,
    save_png,
)
from gsbp_ros.query import (
    CANONICAL_NEGATIVES,
    MAX_PROMPT_CHARS,
    knn_transfer,
    knn_transfer_reference,
    label_query_codes,
    labels_to_selections,
    lift_label_votes,
    pixel_prompt_points,
    point_prompt_queries,
    similarity_segment,
    similarity_segment_reference,
    validate_prompts,
)


def dyadic(rng: np.random.Generator, n: int, c: int = 8, *, scale: bool = True) -> torch.Tensor:
    """[n, c] float64 rows with 1 or 4 entries of ±1 (norm 1 or 2), times a power of two."""
    out = np.zeros((n, c))
    for i in range(n):
        nnz = rng.choice([1, 4])
        cols = rng.choice(c, size=nnz, replace=False)
        out[i, cols] = rng.choice([-1.0, 1.0], size=nnz)
        if scale:
            out[i] *= 2.0 ** rng.integers(-2, 3)
    return torch.from_numpy(out)


# -- similarity_segment -------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.0, 0.1, -0.3, 0.45])
def test_similarity_segment_matches_reference_random(threshold: float) -> None:
    rng = np.random.default_rng(1)
    feats = torch.from_numpy(rng.normal(size=(1500, 16)))
    feats[::37] = 0.0  # never seen: zero feature
    seen = torch.from_numpy(rng.random(1500) > 0.1)
    pos = torch.from_numpy(rng.normal(size=(3, 16)))
    neg = torch.from_numpy(rng.normal(size=(4, 16)))
    for negative, s in [(neg, seen), (None, None), (neg[:0], seen)]:
        mask, scores = similarity_segment(
            feats, pos, negative, threshold=threshold, seen=s, chunk=256
        )
        ref_mask, ref_scores = similarity_segment_reference(
            feats, pos, negative, threshold=threshold, seen=s
        )
        assert torch.equal(mask, ref_mask)
        torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-12)
    assert 0 < int(mask.sum()) < 1500


def test_similarity_segment_exact_ties_and_threshold_edges() -> None:
    rng = np.random.default_rng(2)
    feats = dyadic(rng, 3000)
    pool = dyadic(rng, 6, scale=False)
    pos, neg = pool[:3], torch.cat([pool[2:3], pool[3:]])  # pool[2] is both: exact ties
    for threshold in (0.0, 0.25, 0.5, 1.0):
        for seen in (None, torch.from_numpy(rng.random(3000) > 0.2)):
            mask, scores = similarity_segment(
                feats.float(), pos.float(), neg.float(), threshold=threshold, seen=seen
            )
            ref_mask, ref_scores = similarity_segment_reference(
                feats, pos, neg, threshold=threshold, seen=seen
            )
            assert torch.equal(mask, ref_mask)
            assert torch.equal(scores.double(), ref_scores)  # dyadic: exact in float32
    # The edges really occur in this data: scores equal to the threshold and to a negative.
    assert bool((ref_scores == 0.5).any())
    f = feats[:1]
    m, s = similarity_segment(f, f, f)  # positive == negative: a tie loses
    assert not bool(m[0]) and float(s[0]) == 1.0
    m, _ = similarity_segment(f, f, None, threshold=1.0)  # strictly greater than 1: never
    assert not bool(m[0])


def test_similarity_segment_rules_by_hand() -> None:
    e = torch.eye(3)
    feats = torch.stack([e[0], e[1], 0 * e[0], e[0] + e[1], e[2]])
    pos, neg = e[0:1], e[1:2]
    mask, scores = similarity_segment(feats, pos, neg)
    # e0 beats e1; e1 loses; zero feature unseen; e0+e1 ties (0.707 each); e2: 0 vs 0 tie.
    assert mask.tolist() == [True, False, False, False, False]
    assert scores[2] == 0.0
    mask, _ = similarity_segment(feats, pos, None)  # no negatives: every seen Gaussian
    assert mask.tolist() == [True, True, False, True, True]
    mask, _ = similarity_segment(feats, pos, None, threshold=0.5)
    assert mask.tolist() == [True, False, False, True, False]
    mask, _ = similarity_segment(feats, pos, None, seen=torch.tensor([0.0, 1, 1, 1, 1]))
    assert mask.tolist() == [False, True, False, True, True]
    mask, _ = similarity_segment(feats, e[0], None)  # a [C] query is one row
    assert bool(mask[0])


def test_similarity_segment_errors() -> None:
    f = torch.ones(4, 3)
    with pytest.raises(QueryError, match="channels"):
        similarity_segment(f, torch.ones(1, 2), None)
    with pytest.raises(QueryError, match="zero vector"):
        similarity_segment(f, torch.zeros(1, 3), None)
    with pytest.raises(QueryError, match="empty"):
        similarity_segment(f, torch.zeros(0, 3), None)
    with pytest.raises(QueryError, match="seen"):
        similarity_segment(f, torch.ones(1, 3), None, seen=torch.ones(3, dtype=torch.bool))
    with pytest.raises(QueryError, match="non-finite"):
        similarity_segment(f * math.nan, torch.ones(1, 3), None)
    with pytest.raises(QueryError, match="threshold"):
        similarity_segment(f, torch.ones(1, 3), None, threshold=math.nan)


# -- prompts -------------------------------------------------------------------------------------
def test_validate_prompts() -> None:
    assert validate_prompts(" mug ; cup;", "table; ;other") == (["mug", "cup"], ["table", "other"])
    assert validate_prompts(["mug", "mug"], []) == (["mug", "mug"], [])  # duplicates are fine
    pos, neg = validate_prompts(["Stuff"], ["stuff", " wall "], add_canonical=True)
    assert pos == ["Stuff"]
    assert neg == ["wall", "object", "things", "texture"]  # "stuff" would make it unselectable
    assert set(CANONICAL_NEGATIVES) == {"object", "things", "stuff", "texture"}
    assert validate_prompts("x" * MAX_PROMPT_CHARS, None) == (["x" * MAX_PROMPT_CHARS], [])
    for bad in ["", "  ;  ", [], ["", " "]]:
        with pytest.raises(QueryError, match="no positive prompt"):
            validate_prompts(bad, ["table"])
    with pytest.raises(QueryError, match="characters long"):
        validate_prompts("mug", ["y" * (MAX_PROMPT_CHARS + 1)])
    with pytest.raises(QueryError, match="characters long"):
        validate_prompts("z" * (MAX_PROMPT_CHARS + 1), [])
    with pytest.raises(QueryError, match="not text"):
        validate_prompts(["mug", 3], [])


def test_label_query_codes() -> None:
    names = ["table", "mug_handle", "Mug Body"]
    codes = label_query_codes(names, ["MUG HANDLE", " mug_body", "Table"])
    assert torch.equal(codes, torch.eye(3)[[1, 2, 0]])
    assert torch.equal(label_query_codes(names, "table;mug_handle"), torch.eye(3)[[0, 1]])
    table = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(label_query_codes(names, ["mug body"], code_table=table), table[2:3])
    with pytest.raises(QueryError, match="known labels: table, mug_handle, Mug Body"):
        label_query_codes(names, ["bowl"])
    with pytest.raises(QueryError, match="ambiguous"):
        label_query_codes(["a_b", "A B"], ["a b"])
    with pytest.raises(QueryError, match="no label"):
        label_query_codes(names, [" "])


# -- point and pixel prompts ----------------------------------------------------------------------
def _point_queries_brute(means, feats, points, radius, k, weights) -> np.ndarray:
    norms = np.linalg.norm(feats, axis=1)
    cand = norms > 0 if weights is None else (norms > 0) & (weights > 0)
    out = []
    for p in points:
        d = np.linalg.norm(means - p, axis=1)
        d[~cand] = np.inf
        order = np.argsort(d, kind="stable")[: min(k, int(cand.sum()))]
        if radius is not None:
            order = order[d[order] <= radius]
        w = np.ones(len(order)) if weights is None else weights[order]
        avg = (w[:, None] * feats[order] / norms[order, None]).sum(axis=0)
        out.append(avg / np.linalg.norm(avg))
    return np.stack(out)


@pytest.mark.parametrize(("radius", "k", "use_weights"), [(None, 8, True), (0.6, 5, False)])
def test_point_prompt_queries_match_brute_force(radius, k, use_weights) -> None:
    rng = np.random.default_rng(3)
    means = rng.uniform(-1, 1, size=(400, 3))
    feats = rng.normal(size=(400, 12))
    feats[::9] = 0.0
    weights = rng.uniform(0, 2, size=400) * (rng.random(400) > 0.1) if use_weights else None
    points = rng.uniform(-0.8, 0.8, size=(7, 3))
    got = point_prompt_queries(
        torch.from_numpy(means),
        torch.from_numpy(feats),
        torch.from_numpy(points),
        radius=radius,
        k=k,
        weights=None if weights is None else torch.from_numpy(weights),
    )
    want = _point_queries_brute(means, feats, points, radius, k, weights)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_point_prompt_queries_picks_the_local_feature_and_reports_misses() -> None:
    means = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0], [5.1, 0, 0]])
    feats = torch.tensor([[2.0, 0], [1.0, 0], [0.0, 3], [0.0, 1]])
    q = point_prompt_queries(means, feats, torch.tensor([[0.05, 0, 0], [5.0, 0.1, 0]]), k=2)
    torch.testing.assert_close(q, torch.tensor([[1.0, 0], [0.0, 1]]))
    with pytest.raises(QueryError, match=r"point 1 \(2\.000.*radius 0\.5.*nearest is 1\.9"):
        point_prompt_queries(means, feats, torch.tensor([[0.0, 0, 0], [2.0, 0, 0]]), radius=0.5)
    with pytest.raises(QueryError, match="k must be"):
        point_prompt_queries(means, feats, means[:1], k=0)
    with pytest.raises(QueryError, match="nothing was seen"):
        point_prompt_queries(means, feats, means[:1], weights=torch.zeros(4))


def test_point_prompt_queries_far_from_the_origin_in_float32() -> None:
    # Gaussians 1 cm apart, 1000 units from the origin: |a|^2 + |b|^2 - 2ab in float32 would
    # lose the centimetres; the nearest Gaussian must still be found.
    n = 40
    means = torch.zeros(n, 3)
    means[:, 0] = 1000.0 + 0.01 * torch.arange(n)
    feats = torch.eye(n)  # Gaussian i's feature names i
    points = means.clone()
    points[:, 0] += 0.003
    q = point_prompt_queries(means, feats, points, k=1)
    assert q.argmax(dim=1).tolist() == list(range(n))


def test_pixel_prompt_points_unproject_through_pixel_centres() -> None:
    angle = 0.3
    rot = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    w2c = torch.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = torch.tensor([0.2, -0.1, 1.5])
    K = torch.tensor([[80.0, 0, 31.0], [0, 90.0, 25.0], [0, 0, 1]])
    cam = Camera("view.png", K, w2c, 64, 48)
    depth = torch.full((48, 64), 2.5)
    depth[10, 20] = 0.0
    alpha = torch.ones(48, 64)
    alpha[11, 21] = 0.2
    pts = pixel_prompt_points(cam, [[5, 7], [63, 47]], depth, alpha=alpha)
    cam_pts = pts.double() @ rot.double().T + w2c[:3, 3].double()
    uv = (cam_pts @ K.double().T)[:, :2] / cam_pts[:, 2:]
    # float32 output (the camera's precision): sub-micro-pixel agreement.
    torch.testing.assert_close(
        uv, torch.tensor([[5.5, 7.5], [63.5, 47.5]]).double(), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(cam_pts[:, 2], torch.full((2,), 2.5).double(), atol=1e-6, rtol=0)
    for bad, msg in [
        ([20, 10], "no surface"),
        ([21, 11], "no surface"),
        ([64, 0], "outside"),
        ([math.nan, 3], "not an integer"),
        ([3, math.inf], "not an integer"),
        ([2.5, 3], "not an integer"),
    ]:
        with pytest.raises(QueryError, match=msg):
            pixel_prompt_points(cam, [bad], depth, alpha=alpha)
    with pytest.raises(QueryError, match="alpha is"):
        pixel_prompt_points(cam, [[5, 7]], depth, alpha=alpha[:, :60])


# -- kNN transfer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 4, 7, 300, 1000])
def test_knn_transfer_matches_brute_force_random(k: int) -> None:
    rng = np.random.default_rng(4)
    target = torch.from_numpy(rng.normal(size=(400, 16)))
    target[::50] = 0.0
    source = torch.from_numpy(rng.normal(size=(300, 16)))
    source[7] = 0.0  # ignored
    labels = torch.from_numpy(rng.integers(-1, 4, size=300))
    got = knn_transfer(target, source, labels, k=k, chunk=64)
    want = knn_transfer_reference(target, source, labels, k=k)
    assert torch.equal(got[0], want[0])
    assert torch.equal(got[1], want[1])
    assert got[0].dtype == torch.int64 and got[1].dtype == torch.float32
    assert set(got[0][::50].tolist()) == {-1} and float(got[1][::50].abs().sum()) == 0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_knn_transfer_matches_brute_force_with_exact_ties(k: int) -> None:
    rng = np.random.default_rng(5)
    base = dyadic(rng, 12, c=6, scale=False)
    source = base[torch.from_numpy(rng.integers(0, 12, size=60))]  # many duplicate rows
    labels = torch.from_numpy(rng.integers(-1, 3, size=60))
    target = dyadic(rng, 500, c=6)
    got = knn_transfer(target.float(), source.float(), labels, k=k, chunk=100)
    want = knn_transfer_reference(target, source, labels, k=k)
    assert torch.equal(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_knn_transfer_with_sparse_large_label_values() -> None:
    # Vote memory follows the number of labels, not the largest value (2**40 would need
    # terabytes of per-value slots); the tie rules still see the label values themselves.
    rng = np.random.default_rng(10)
    target = torch.from_numpy(rng.normal(size=(200, 8)))
    source = torch.from_numpy(rng.normal(size=(50, 8)))
    labels = torch.from_numpy(rng.choice([-1, 3, 2**40, 7], size=50))
    for k in (1, 2, 4):
        got = knn_transfer(target, source, labels, k=k)
        want = knn_transfer_reference(target, source, labels, k=k)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert 2**40 in got[0].tolist()


def test_knn_transfer_tie_rules_by_hand() -> None:
    e = torch.eye(3)
    t = e[0:1]
    # Equal similarity: the lower source index is the nearer neighbour.
    src = torch.stack([e[0], e[0], e[1]])
    assert knn_transfer(t, src, torch.tensor([1, 0, 2]), k=1)[0].tolist() == [1]
    # Count tie 1:1 with equal summed similarity: the smaller label value wins.
    lab, conf = knn_transfer(t, src, torch.tensor([1, 0, 2]), k=2)
    assert lab.tolist() == [0] and conf.tolist() == [0.5]
    lab, _ = knn_transfer(t, src, torch.tensor([1, -1, 2]), k=2)
    assert lab.tolist() == [-1]  # background is a label, and the smallest
    # Count tie 2:2: the larger summed similarity wins (1 + 0 < 0.6 + 0.6).
    src = torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0.6, -0.8, 0], [0.0, 0, 1]])
    lab, conf = knn_transfer(t, src, torch.tensor([0, 1, 1, 0]), k=4)
    assert lab.tolist() == [1] and conf.tolist() == [0.5]


def test_knn_transfer_recovers_clusters_exactly() -> None:
    rng = np.random.default_rng(6)
    centres = np.linalg.qr(rng.normal(size=(32, 4)))[0].T * 3.0  # 4 orthogonal directions
    cluster_labels = np.array([0, 1, 2, -1])  # the fourth cluster is background

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        which = rng.integers(0, 4, size=n)
        return centres[which] + 0.3 * rng.normal(size=(n, 32)), cluster_labels[which]

    source, source_labels = sample(200)
    target, truth = sample(3000)
    labels, conf = knn_transfer(
        torch.from_numpy(target).float(),
        torch.from_numpy(source).float(),
        torch.from_numpy(source_labels),
        k=5,
        chunk=512,
    )
    assert np.array_equal(labels.numpy(), truth)
    assert bool((conf == 1.0).all())


def test_knn_transfer_errors_and_clamping() -> None:
    src, lab = torch.eye(3), torch.tensor([0, 1, 2])
    with pytest.raises(QueryError, match="k must be at least 1"):
        knn_transfer(torch.eye(3), src, lab, k=0)
    with pytest.raises(QueryError, match=">= -1"):
        knn_transfer(torch.eye(3), src, torch.tensor([0, -2, 1]))
    with pytest.raises(QueryError, match="shape"):
        knn_transfer(torch.eye(3), src, lab[:2])
    with pytest.raises(QueryError, match="every source feature is zero"):
        knn_transfer(torch.eye(3), 0 * src, lab)
    labels, conf = knn_transfer(torch.eye(3), src, lab, k=99)  # k clamps to M = 3
    assert labels.tolist() == [0, 1, 2]
    torch.testing.assert_close(conf, torch.full((3,), 1 / 3))


# -- lifted masks ---------------------------------------------------------------------------------
def test_lift_label_votes() -> None:
    votes = torch.tensor(
        [[0.3, 0.6], [0.2, 0.2], [0.0, 0.0], [0.5, 0.0], [1.5, 0.5], [0.3, 0.3], [0.0, 0.0]],
        dtype=torch.float64,
    )
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 0.0], dtype=torch.float64)
    labels, conf = lift_label_votes(votes, weight)
    # bg 0.1 -> 1; bg 0.6 -> -1; all bg; bg 0.5 ties label 0 -> -1; votes exceed weight
    # (total = 2.0); label tie -> first label; never seen.
    assert labels.tolist() == [1, -1, -1, -1, 0, 0, -1]
    torch.testing.assert_close(
        conf, torch.tensor([0.6, 0.6, 1.0, 0.5, 0.75, 0.5, 0.0], dtype=torch.float32)
    )
    labels, _ = lift_label_votes(votes, weight, min_share=0.55)
    assert labels.tolist() == [1, -1, -1, -1, 0, -1, -1]
    with pytest.raises(QueryError, match="non-negative"):
        lift_label_votes(-votes, weight)
    with pytest.raises(QueryError, match="weight must have shape"):
        lift_label_votes(votes, weight[:3])


# -- selections -----------------------------------------------------------------------------------
def test_labels_to_selections() -> None:
    means = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]], dtype=float)
    labels = np.array([1, -1, 1, 0, 1])
    conf = np.array([0.9, 1.0, 0.4, 0.8, 0.7], dtype=np.float32)
    sels = labels_to_selections(labels, conf, ["lip", "handle", "base"], means)
    assert [s.name for s in sels] == ["lip", "handle"]  # "base" has no Gaussian
    handle = sels[1]
    assert handle.indices.tolist() == [0, 2, 4] and handle.indices.dtype == np.int64
    np.testing.assert_array_equal(handle.scores, conf[[0, 2, 4]])
    np.testing.assert_allclose(handle.summary.centroid, [2, 0, 0])
    assert handle.summary.approach is None  # no normals given
    sels = labels_to_selections(
        torch.from_numpy(labels),
        torch.from_numpy(conf),
        ["lip", "handle", "base"],
        means,
        min_confidence=0.75,
    )
    assert [s.indices.tolist() for s in sels] == [[3], [0]]
    # Normals (+z everywhere) with cameras above: approach is straight down.
    sels = labels_to_selections(
        labels,
        conf,
        ["lip", "handle", "base"],
        means,
        normals_fn=lambda idx: np.tile([0.0, 0.0, -1.0], (idx.size, 1)),
        camera_centers=np.array([[0.0, 0.0, 5.0], [4.0, 0.0, 5.0]]),
    )
    np.testing.assert_allclose(sels[1].summary.approach, [0, 0, -1])
    with pytest.raises(QueryError, match="labels must lie"):
        labels_to_selections(np.array([0, 3, 0, 0, 0]), conf, ["a", "b", "c"], means)
    with pytest.raises(QueryError, match="same N"):
        labels_to_selections(labels[:4], conf, ["a", "b", "c"], means)


# -- overlays and 2D masks ------------------------------------------------------------------------
def test_overlay_mask_colours_exactly_the_masked_pixels() -> None:
    rgb = np.full((4, 5, 3), 100, dtype=np.uint8)
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = mask[3, 0] = True
    out = overlay_mask(rgb, mask, color=(1.0, 0.0, 0.5), alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert np.array_equal(out[~mask], rgb[~mask])
    want = [round(50 + 127.5), 50, round(50 + 63.75)]  # 0.5*100 + 0.5*255*color
    assert out[mask].tolist() == [want, want]
    out = overlay_mask(torch.full((4, 5, 3), 0.2), torch.from_numpy(mask), alpha=1.0)
    assert out[1, 2].tolist() == [255, 0, 0] and out[0, 0].tolist() == [51, 51, 51]
    with pytest.raises(QueryError, match="mask is"):
        overlay_mask(rgb, mask[:3])


def test_overlay_labels_and_palette() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    labels = np.array([[-1, 0, 1], [2, len(PALETTE), -1]])
    out = overlay_labels(rgb, labels, PALETTE, alpha=1.0)
    want = np.rint(np.array(PALETTE) * 255).astype(np.uint8)
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 2].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == want[0].tolist() and out[0, 2].tolist() == want[1].tolist()
    assert out[1, 0].tolist() == want[2].tolist() and out[1, 1].tolist() == want[0].tolist()
    pal = np.array(PALETTE)
    gaps = np.linalg.norm(pal[:, None] - pal[None], axis=-1) + 9 * np.eye(len(pal))
    assert gaps.min() > 0.25 and ((pal >= 0) & (pal <= 1)).all()
    assert np.linalg.norm(pal - np.array(BACKGROUND_COLOR), axis=1).min() > 0.25
    assert color_for(-1) == BACKGROUND_COLOR and color_for(len(PALETTE) + 3) == PALETTE[3]


def test_save_png_round_trip(tmp_path) -> None:
    img = np.random.default_rng(7).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    save_png(img, tmp_path / "sub" / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "a.png")), img)
    save_png(np.eye(3, dtype=bool), tmp_path / "m.png")
    assert np.asarray(Image.open(tmp_path / "m.png")).tolist() == (np.eye(3) * 255).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "sub"]  # no temp files


def test_mask_2d_applies_the_3d_rule_per_pixel() -> None:
    rng = np.random.default_rng(8)
    feats = torch.from_numpy(rng.normal(size=(9, 11, 6)))
    alpha = torch.from_numpy(rng.random((9, 11)))
    alpha[0, 0] = 0.5  # exactly the limit: kept
    pos, neg = torch.from_numpy(rng.normal(size=(2, 6))), torch.from_numpy(rng.normal(size=(3, 6)))
    mask = mask_2d(feats, pos, neg, 0.05, alpha)
    ref, _ = similarity_segment_reference(
        feats.reshape(-1, 6), pos, neg, threshold=0.05, seen=alpha.reshape(-1) >= 0.5
    )
    assert mask.shape == (9, 11) and torch.equal(mask, ref.reshape(9, 11))
    assert not bool(mask[alpha < 0.5].any())
    assert torch.equal(
        mask_2d(feats, pos, neg),
        similarity_segment_reference(feats.reshape(-1, 6), pos, neg)[0].reshape(9, 11),
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_queries_on_cuda_match_cpu() -> None:
    rng = np.random.default_rng(9)
    feats = torch.from_numpy(rng.normal(size=(2000, 16)))
    pos, neg = feats[:2] + 0.1, feats[2:5] + 0.1
    labels = torch.from_numpy(rng.integers(-1, 3, size=2000))
    cpu = similarity_segment(feats, pos, neg, threshold=0.1)
    gpu = similarity_segment(feats.cuda(), pos.cuda(), neg.cuda(), threshold=0.1)
    assert gpu[0].is_cuda and torch.equal(gpu[0].cpu(), cpu[0])
    cpu = knn_transfer(feats, feats.flip(0), labels, k=5)
    gpu = knn_transfer(feats.cuda(), feats.flip(0).cuda(), labels.cuda(), k=5)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


def test_selection_geometry_is_weighted_and_trims_floaters() -> None:
    from gsbp_ros.query import selection_from_indices

    rng = np.random.default_rng(0)
    means = np.vstack([rng.uniform(-0.05, 0.05, (60, 3)), [[3.0, 3.0, 3.0], [0.0, 0.0, 0.2]]])
    weights = np.r_[np.ones(60), 1.0, 0.0]  # a far floater; a transparent one nearby
    idx = np.arange(62)
    sel = selection_from_indices("obj", idx, np.ones(62), means, weights=weights)
    assert sel.info["trimmed"] == 2.0 and sel.summary.num_trimmed == 2
    np.testing.assert_allclose(sel.summary.centroid, means[:60].mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(sel.summary.aabb_max, means[:60].max(axis=0))
    sels = labels_to_selections(
        np.zeros(62, np.int64), np.ones(62), ["obj"], means, weights=weights
    )
    assert sels[0].summary.num_trimmed == 2
