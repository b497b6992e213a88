"""docs/quality.md: the sweep tables, plots and the side-by-side baseline as markdown.

Every number and every comparative sentence is generated from the results passed in, so the
file can be regenerated after any change by the one command it names at the top.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence

import numpy as np

from gsbp_ros.evaluation.comparison import BACKPROJECTION, MethodResult, describe_condition
from gsbp_ros.evaluation.robustness import AXES, FINISHES, SweepConfig, finish_label

ACCEPT = 0.9


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _level(axis: str, v: float) -> str:
    if axis in ("drop", "flip", "noise"):
        return f"{100 * v:.0f}%"
    if axis == "boundary":
        return "none" if v == 0 else f"{'dilated' if v > 0 else 'eroded'} {abs(int(v))} px"
    return f"{v:g}x"


def machine() -> str:
    import torch

    from gsbp_ros.hostinfo import cpu_model

    text = (
        f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} "
        f"thread{'s' if torch.get_num_threads() != 1 else ''})"
    )
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def load_average() -> str:
    """The 1-minute load average, or "n/a" where the OS does not report one."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def summary_section(rows: Sequence[dict], results: Sequence[MethodResult]) -> list[str]:
    """A few generated sentences: the acceptance outcome and the distillation verdict."""
    out = []
    combined = [r for r in rows if r["group"] == "combined"]
    if combined:
        met = [
            describe_condition(r["condition"])
            for r in combined
            if min(r["iou3d"].values()) >= ACCEPT
        ]
        missed = [
            f"{describe_condition(r['condition'])} (lowest: {min(r['iou3d'], key=r['iou3d'].get)} "
            f"{_f(min(r['iou3d'].values()))}, short by {_f(ACCEPT - min(r['iou3d'].values()))})"
            for r in combined
            if min(r["iou3d"].values()) < ACCEPT
        ]
        text = f"Per-object 3D IoU >= {ACCEPT} (mean over seeds) "
        text += f"holds with {'; '.join(met)}" if met else "holds in no combined condition"
        text += f"; it does not with {'; '.join(missed)}." if missed else "."
        out += [f"- {text}"]
    for c, group in _by_condition(results):
        bp = next((r for r in group if r.method == BACKPROJECTION), None)
        others = [r for r in group if r is not bp]
        if bp is None or not others:
            continue
        better = [r for r in others if round(r.mean3d, 3) > round(bp.mean3d, 3)]
        worse = [r for r in others if round(r.mean3d, 3) < round(bp.mean3d, 3)]
        text = (
            f"{c}: back-projection reaches a mean 3D IoU of {_f(bp.mean3d)} in "
            f"{bp.cpu_seconds:.1f} s of CPU time"
        )
        if better:
            text += "; higher with " + ", ".join(
                f"{r.method} ({_f(r.mean3d)}, {r.cpu_seconds / bp.cpu_seconds:.1f}x the CPU time)"
                for r in better
            )
        if worse:
            text += "; lower with " + ", ".join(f"{r.method} ({_f(r.mean3d)})" for r in worse)
        out += [f"- {text}."]
    return ["## Summary", "", *out, ""] if out else []


def sweep_section(
    rows: Sequence[dict],
    names: Sequence[str],
    config: SweepConfig,
    plots: dict[str, str],
    footprint: float = float("nan"),
) -> list[str]:
    """Acceptance table, one table (+ plot) per axis, and the mode/normalisation finding."""
    out = []
    base = finish_label(*FINISHES[0])
    combined = [r for r in rows if r["group"] == "combined"]
    if combined:
        out += [
            "### Acceptance: 30 % of views dropped plus 20 % corrupted masks",
            "",
            f"Per-object 3D IoU, mean over {config.seeds} seeds (worst seed in brackets); "
            f"the target is >= {ACCEPT} for every object. *shortfall* is how far the worst "
            "object's mean IoU falls below it.",
            "",
        ]
        table = []
        for r in combined:
            per = r["iou3d"]
            lowest = min(per.values())
            table.append(
                [describe_condition(r["condition"])]
                + [_f(per[n]) for n in names]
                + [
                    f"{_f(r['mean3d'])} ({_f(r['worst3d'])})",
                    _f(r["worst_object3d"]),
                    "meets it" if lowest >= ACCEPT else f"{_f(ACCEPT - lowest)}",
                ]
            )
        out += _table(
            ["condition", *names, "mean (worst seed)", "worst object, any seed", "shortfall"],
            table,
        )
    for axis in AXES:
        axis_rows = sorted(
            (r for r in rows if r["group"] == axis), key=lambda r: r["condition"][axis]
        )
        if not axis_rows:
            continue
        out += [f"### {_AXIS_HEADINGS[axis]}", "", _AXIS_TEXT[axis], ""]
        aa = {r["condition"]["scale"]: r for r in rows if r["group"] == "scale_antialiased"}
        extra = ["mean 3D, antialiased"] if axis == "scale" and aa else []
        table = []
        for r in axis_rows:
            level = r["condition"][axis]
            more = [_f(aa[level]["mean3d"]) if level in aa else "-"] if extra else []
            table.append(
                [_level(axis, level)]
                + [_f(r["iou3d"][n]) for n in names]
                + [_f(r["mean3d"]), _f(r["worst3d"])]
                + [_f(r["miou2d"][finish_label(*f)]) for f in FINISHES]
                + more
            )
        out += _table(
            ["level", *names, "mean 3D", "worst seed"]
            + [f"2D {finish_label(*f)}" for f in FINISHES]
            + extra,
            table,
        )
        if axis == "scale":
            out += _scale_sentence(axis_rows, aa, footprint)
        if axis in plots:
            out += [f"![{_AXIS_HEADINGS[axis]}]({plots[axis]})", ""]
    agree = all(r["finishes_agree_3d"] for r in rows)
    n_runs = sum(r["seeds"] for r in rows)
    out += ["### Expected vs accumulated, with and without L2 normalisation", ""]
    if agree:
        out.append(
            f"In all {n_runs} runs the four finishes selected exactly the same Gaussians in 3D, "
            "so the per-object tables (expected mode) stand for all four. That is the "
            "expected outcome: the query compares cosine similarities per Gaussian, which "
            "neither the division by Σw (a positive number per Gaussian) nor L2 "
            "normalisation changes."
        )
    else:
        differ = sum(1 for r in rows if not r["finishes_agree_3d"])
        out.append(
            f"In {differ} of {len(rows)} conditions the finishes selected different Gaussians "
            f"in 3D; the tables show the {base} finish."
        )
    out += [""]
    out += _finish_2d_sentence(rows)
    return out


def _scale_sentence(rows: Sequence[dict], aa: dict, footprint: float) -> list[str]:
    """Why resolution matters here, with this run's numbers."""
    lower = [r for r in rows if r["condition"]["scale"] < 1.0]
    if not lower or math.isnan(footprint):
        return []
    top = max(lower, key=lambda r: r["condition"]["scale"])
    s = top["condition"]["scale"]
    text = (
        f"The Gaussians of this scene project to a median footprint of σ = {footprint:.2f} px "
        f"at full resolution ({footprint * s:.2f} px at {s:g}x), before the rasterizer's "
        "0.3 px² low-pass. Classic rasterization adds that low-pass at full opacity, so the "
        "smaller the render, the wider each Gaussian spreads over its neighbours' pixels "
        "relative to its size, and labels bleed across object boundaries"
    )
    if s in aa:
        text += (
            f": lifted with antialiased rasterization (opacity compensated for the low-pass), "
            f"the {s:g}x views give a mean 3D IoU of {_f(aa[s]['mean3d'])} instead of "
            f"{_f(top['mean3d'])}"
        )
    text += (
        ". Keep `render_scale` at 1 unless the scene's Gaussians are several pixels wide at "
        "the reduced size."
    )
    return [text, ""]


def _finish_2d_sentence(rows: Sequence[dict]) -> list[str]:
    keys = [finish_label(*f) for f in FINISHES]
    vals = {k: [r["miou2d"][k] for r in rows if not math.isnan(r["miou2d"][k])] for k in keys}
    if not vals[keys[0]]:
        return []
    mean = {k: float(np.mean(v)) for k, v in vals.items()}
    best = max(mean, key=mean.get)
    worst = min(mean, key=mean.get)
    return [
        "In 2D (rendered features, Eq. 7) they differ, because rendering mixes the features "
        "of several Gaussians per pixel and their scale matters there. Averaged over all "
        "conditions the held-out 2D mIoU is "
        + ", ".join(f"{_f(mean[k])} ({k})" for k in keys)
        + f": {best} is best and {worst} worst (accumulated features are larger where more "
        "views saw a Gaussian, so those Gaussians dominate the pixels they share). Expected "
        "+ L2 and accumulated + L2 are the same features, hence the same numbers.",
        "",
    ]


_AXIS_HEADINGS = {
    "drop": "Views dropped",
    "flip": "Whole segments with a wrong label",
    "noise": "Salt-and-pepper noise",
    "boundary": "Boundaries eroded or dilated",
    "scale": "Lower render resolution",
}

_AXIS_TEXT = {
    "drop": "A fraction of the input views has no label map (chosen at random per seed).",
    "flip": "Each connected segment of each input view gets, with this probability, a label "
    "drawn uniformly from the other labels.",
    "noise": "Each pixel gets, with this probability, a uniform random value in 0..L "
    "(0 = unlabelled).",
    "boundary": "Eroded: pixels within k px of another value become unlabelled. Dilated: "
    "each segment grows k px over larger segments and unlabelled pixels (objects bleed onto "
    "the table).",
    "scale": "Views rendered at this fraction of their resolution (label maps resampled to "
    "it by nearest neighbour, as the label source does); 2D scores on full-size held-out "
    "views.",
}


def comparison_section(
    results: Sequence[MethodResult], names: Sequence[str], plot: str
) -> list[str]:
    """Side-by-side table, the distillation verdict in words, and the plot."""
    out = []
    table = []
    for r in results:
        mem = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.0f} MiB"
        weights = "" if math.isnan(r.weights_cpu_seconds) else f"{r.weights_cpu_seconds:.1f} s"
        table.append(
            [describe_condition(r.condition), r.method]
            + [_f(r.iou3d[n]) for n in names]
            + [
                _f(r.mean3d),
                _f(r.miou2d_input),
                _f(r.miou2d_heldout),
                f"{r.cpu_seconds:.1f} s",
                weights,
                f"{r.seconds:.1f} s",
                mem,
            ]
        )
    header = ["input", "method", *names, "mean 3D", "2D input views", "2D held-out"]
    header += ["CPU time", "of which weights", "wall time", "peak memory"]
    out += _table(header, table)
    if plot:
        out += [f"![back-projection vs distillation]({plot})", ""]
    out += ["**Where distillation wins, and where it does not** (from the table above):", ""]
    for c, group in _by_condition(results):
        bp = next((r for r in group if r.method == BACKPROJECTION), None)
        if bp is None:
            continue
        for r in group:
            if r is not bp:
                out.append(f"- {c}, {r.method}: " + _verdict(bp, r) + ".")
    return [*out, ""]


def _by_condition(results: Sequence[MethodResult]) -> list[tuple[str, list[MethodResult]]]:
    """The results grouped by input condition, conditions in the order they first appear."""
    groups: dict[str, list[MethodResult]] = {}
    for r in results:
        groups.setdefault(describe_condition(r.condition), []).append(r)
    return list(groups.items())


def _verdict(bp: MethodResult, other: MethodResult) -> str:
    parts = []
    for label, a, b in (
        ("mean 3D IoU", bp.mean3d, other.mean3d),
        ("2D mIoU on the input views", bp.miou2d_input, other.miou2d_input),
        ("2D mIoU on held-out views", bp.miou2d_heldout, other.miou2d_heldout),
    ):
        if math.isnan(a) or math.isnan(b):
            continue
        if _f(a) == _f(b):
            parts.append(f"{label} equal ({_f(a)})")
        elif b > a:
            parts.append(f"**distillation wins** on {label} ({_f(b)} vs {_f(a)})")
        else:
            parts.append(f"back-projection wins on {label} ({_f(a)} vs {_f(b)})")
    if bp.cpu_seconds > 0:
        parts.append(f"{other.cpu_seconds / bp.cpu_seconds:.1f}x the CPU time of back-projection")
    if bp.peak_bytes and other.peak_bytes:
        parts.append(f"{other.peak_bytes / bp.peak_bytes:.1f}x its peak memory")
    return "; ".join(parts)


def benchmark_section() -> list[str]:
    """How to run the public-benchmark protocol (the data is not part of this package)."""
    return [
        "## Public benchmarks (bring the data)",
        "",
        "`gsbp eval --benchmark DIR` computes the paper's 2D mIoU (Eq. 7 masks of rendered "
        "features against per-image GT masks, averaged per prompt over views, then over "
        "prompts: Gaussian Grouping's protocol) for every scene folder in DIR. No benchmark "
        "data ships with this package and none is downloaded: bring the scenes, and a splat "
        "trained on each (`scene.ply`, `point_cloud.ply`, "
        "`point_cloud/iteration_<largest>/point_cloud.ply` or `ckpts/ckpt_<largest>*.pt` in "
        "the scene folder, or `--scene-file`). Two layouts are read, as their own evaluation "
        "scripts read them:",
        "",
        "```text",
        "LERF-Mask (Gaussian Grouping)             3D-OVS",
        "<scene>/sparse/0/                         <scene>/sparse/0/",
        "<scene>/images_train/  (training images)  <scene>/segmentations/classes.txt",
        "<scene>/test_mask/<i>/<prompt>.png        <scene>/segmentations/<image stem>/<class>.png",
        "   <i>: index among the test images          GT inside: > 0",
        "   (not in images_train) sorted by name;",
        "   GT inside: > 128",
        "```",
        "",
        "LERF-Mask scenes are lifted from their training images only; 3D-OVS scenes from "
        "every view (as the paper's evaluation code does), and there each class is queried "
        "against all the others. Features come from the engine's sources: `--sources clip "
        "--clip-model DIR` for language prompts (weights on disk), or `--sources labels "
        "--label-maps SUBDIR` (relative to each scene, names from `--label-names` or a "
        "`names.json`) when prompts name labels. The tests build both layouts from the demo "
        "scene (test/test_eval_benchmark.py); no score on the real datasets has been measured "
        "here.",
        "",
        "```bash",
        "gsbp eval --benchmark data/lerf_mask --sources clip --clip-model models/clip "
        "--out lerf_mask.md",
        "```",
        "",
    ]
