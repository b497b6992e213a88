"""``gsbp eval``: the evaluation modes behind one command, and the report they write.

- ``--demo DIR``: IoU of text segmentation and part lifting on the demo scene;
- ``--robustness`` / ``--baseline`` (with ``--demo DIR``, or ``--scene``, ``--cameras``,
  ``--label-maps``, ``--label-names``, ``--gt`` for any scene with ground truth): the sweep
  over degraded label maps, and back-projection vs distillation side by side;
- ``--benchmark DIR``: the 2D mIoU protocol on LERF-Mask / 3D-OVS layouts.

``--out X.md`` writes a markdown report (plots beside it as ``X_<name>.png``), ``--out
X.json`` the raw results; without ``--out`` the markdown goes to stdout (no plots).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError

ProgressFactory = Callable[[str], Callable[[int, int, float | None], None]]

#: the command that regenerates docs/quality.md
DOCS_COMMAND = (
    "gsbp demo-scene --out out/scene && "
    "gsbp eval --demo out/scene --robustness --baseline --threads 1 --out docs/quality.md"
)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``gsbp eval`` (one table: the CLI and the report's command line)."""
    from gsbp_ros.raster import ENGINES

    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--demo", default="", help="folder written by gsbp demo-scene")
    what.add_argument("--scene", default="", help="splats of a scene with ground truth")
    what.add_argument("--benchmark", default="", help="LERF-Mask / 3D-OVS scene(s) folder")
    p.add_argument("--cameras", default="", help="with --scene: COLMAP model / transforms.json")
    p.add_argument("--label-maps", default="", help="label map folder (--benchmark: per scene)")
    p.add_argument("--label-names", default="", help="comma list (default: names.json nearby)")
    p.add_argument("--gt", default="", help="with --scene: [N] int .npy label per Gaussian")
    p.add_argument("--robustness", action="store_true", help="sweep over degraded label maps")
    p.add_argument("--baseline", action="store_true", help="distillation side by side")
    p.add_argument("--seed", type=int, default=0, help="first seed (runs are reproducible)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per sweep condition")
    p.add_argument("--drop", default="0,0.1,0.3,0.5,0.7", help="fractions of views dropped")
    p.add_argument("--flip", default="0,0.1,0.2,0.3,0.4", help="fractions of segments flipped")
    p.add_argument("--noise", default="0,0.1,0.2,0.4,0.6", help="salt-and-pepper fractions")
    p.add_argument("--boundary", default="-4,-2,-1,0,1,2,4", help="px eroded (<0)/dilated (>0)")
    p.add_argument("--scales", default="1,0.5,0.25,0.125", help="render scales")
    p.add_argument("--no-combined", action="store_true", help="skip the combined conditions")
    p.add_argument("--holdout", type=int, default=8, help="every k-th view held out (0: none)")
    p.add_argument("--iterations", default="1000,7000,30000", help="Adam checkpoints")
    p.add_argument("--lr", type=float, default=1e-3, help="distillation learning rate")
    p.add_argument("--cg-iterations", type=int, default=200, help="least-squares CG iterations")
    p.add_argument("--sources", default="clip", help="--benchmark: feature sources")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16")
    p.add_argument("--dinov2-model", default="facebook/dinov2-small")
    p.add_argument("--scene-file", default="", help="--benchmark: splat path in each scene")
    p.add_argument("--threshold", type=float, default=0.0, help="--benchmark: Eq. 6/7 threshold")
    p.add_argument("--render-scale", type=float, default=1.0, help="--benchmark: input views")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--engine", default="auto", choices=ENGINES, help="raster engine")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots beside the report")
    p.add_argument("--out", default="", help="report: .md (plots beside it) or .json")


def command_line(args: argparse.Namespace) -> str:
    """``gsbp eval ...`` with the options that differ from their defaults (for reports)."""
    import shlex

    parser = argparse.ArgumentParser(add_help=False)
    add_eval_arguments(parser)
    parts = ["gsbp eval"]
    for action in parser._actions:  # argparse keeps its option table here
        if not action.option_strings or action.dest not in vars(args):
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        parts.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def parse_levels(text: str, flag: str, *, integer: bool = False) -> list[float]:
    """``"0,0.1,0.3"`` -> levels; ``"none"`` skips the axis; anything empty is an error."""
    text = text.strip()
    if text.lower() == "none":
        return []
    items = [t.strip() for t in text.split(",")]
    if not text or any(not t for t in items):
        raise GsbpError(
            f"{flag} is an empty sweep range {text!r}: give levels such as 0,0.3,0.5, "
            "or 'none' to skip the axis"
        )
    try:
        values = [int(t) if integer else float(t) for t in items]
    except ValueError as exc:
        kind = "whole numbers" if integer else "numbers"
        raise GsbpError(f"{flag} takes comma-separated {kind}, got {text!r}") from exc
    return values


def _sweep_config(args: argparse.Namespace):
    from gsbp_ros.evaluation.robustness import SweepConfig

    cfg = SweepConfig(
        drop=parse_levels(args.drop, "--drop"),
        flip=parse_levels(args.flip, "--flip"),
        noise=parse_levels(args.noise, "--noise"),
        boundary=[int(v) for v in parse_levels(args.boundary, "--boundary", integer=True)],
        scale=parse_levels(args.scales, "--scales"),
        seeds=args.seeds,
        seed=args.seed,
        holdout=args.holdout,
        engine=args.engine,
    )
    if args.no_combined:
        cfg.combined = []
    cfg.check()
    return cfg


def _load_data(args: argparse.Namespace):
    from gsbp_ros.evaluation.labelled import load_demo, load_labelled_scene

    if args.demo:
        data = load_demo(args.demo)
    else:
        missing = [f for f in ("cameras", "label_maps", "gt") if not getattr(args, f)]
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            raise GsbpError(f"--scene needs {flags} (a scene with label maps and ground truth)")
        names = [n.strip() for n in args.label_names.split(",") if n.strip()]
        if not names:
            names = _names_near(Path(args.label_maps))
        data = load_labelled_scene(args.scene, args.cameras, args.label_maps, names, args.gt)
    device = _device(args.device)
    data.scene = data.scene.to(device)
    return data


def _names_near(folder: Path) -> list[str]:
    from gsbp_ros.features.labels import label_names_near

    names = label_names_near(folder)
    if not names:
        raise GsbpError(
            "no label names: give --label-names a,b,c or put a names.json beside the maps"
        )
    return names


def _device(name: str):
    from gsbp_ros.engine import resolve_device

    return resolve_device(name)


def run_eval(args: argparse.Namespace, progress: ProgressFactory) -> int:
    """Run the requested modes and write the report."""
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".md", ".json"):
        raise GsbpError(f"--out must end in .md (report) or .json (raw results), got {out}")
    if args.threads < 0:
        raise GsbpError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.benchmark:
        return _run_benchmark(args, out)
    if not (args.robustness or args.baseline):
        if not args.demo:
            raise GsbpError("--scene needs --robustness and/or --baseline")
        return _run_demo_only(args, out)
    t0 = time.monotonic()
    sweep_cfg = _sweep_config(args) if args.robustness else None
    data = _load_data(args)
    results: dict = {"data": data.description, "seed": args.seed}
    demo_md: list[str] = []
    if args.demo:
        from gsbp_ros.evaluation.demo import demo_rows, rows_markdown

        print("clean demo queries ...", file=sys.stderr)
        rows = demo_rows(args.demo, device=args.device, engine=args.engine)
        results["demo"] = rows
        demo_md = [
            "## Clean label maps, every view (`gsbp eval --demo`)",
            "",
            "Text prompts on the object label maps of all views, as the node answers them, and "
            "part labels lifted from six views' part maps (affordance lift-with-poses mode).",
            "",
            *rows_markdown(rows),
            "",
        ]
    plots = out if out is not None and out.suffix == ".md" and not args.no_plots else None
    sweep_md, sweep_rows, base_md, base_res = [], [], [], []
    if sweep_cfg is not None:
        sweep_md, sweep_rows = _sweep(data, sweep_cfg, results, progress, plots)
    if args.baseline:
        base_md, base_res = _baseline(args, data, results, plots)
    from gsbp_ros.evaluation.report import benchmark_section, summary_section

    md = [
        *_header(args, data),
        *summary_section(sweep_rows, base_res),
        *demo_md,
        *sweep_md,
        *base_md,
        *(benchmark_section() if args.demo else []),
        f"Whole run: {time.monotonic() - t0:.0f} s on {_machine()}; 1-minute load average at "
        f"the end {load_average()} (the machine is shared: wall times vary, CPU times less).",
        "",
    ]
    _write(out, md, results)
    return 0


def _machine() -> str:
    from gsbp_ros.evaluation.report import machine

    return machine()


def load_average() -> str:
    from gsbp_ros.evaluation.report import load_average as la

    return la()


def _header(args: argparse.Namespace, data) -> list[str]:
    train, test = data.split(args.holdout)
    return [
        "# Quality: robustness to bad label maps, and distillation side by side",
        "",
        "Generated by `gsbp eval` (do not edit by hand); regenerate with (fixed seeds):",
        "",
        "```bash",
        (f"gsbp demo-scene --out {args.demo} && " if args.demo else "") + command_line(args),
        "```",
        "",
        f"Data: {data.description}: {data.scene.num_gaussians} Gaussians, "
        f"{len(data.cameras)} views of {data.cameras[0].width}x{data.cameras[0].height}, "
        f"labels {', '.join(data.names)}. Seed {args.seed}; machine: {_machine()}; 1-minute "
        f"load average at the start {load_average()}.",
        "",
        "How it is scored: label maps are lifted with the package's label-map source "
        "(identity encoding) and queried with the engine's rule for label prompts (the named "
        "label's code against every other label's). *3D IoU* compares the Gaussians a prompt "
        "selects with the per-Gaussian ground truth. *2D mIoU* renders the per-Gaussian "
        "features into a view, applies the same rule per pixel (paper Eq. 7) and compares "
        "with that view's clean label map, per object, averaged over views and objects. "
        f"Every {args.holdout}th view is held out of the input "
        f"({len(train)} input views, {len(test)} held-out views).",
        "",
    ]


def _sweep(data, cfg, results: dict, progress: ProgressFactory, out: Path | None):
    """(markdown lines, summary rows) of the robustness sweep."""
    from gsbp_ros.evaluation.report import sweep_section
    from gsbp_ros.evaluation.robustness import AXES, footprint_px, run_sweep, summarize

    print("robustness sweep ...", file=sys.stderr)
    t0 = time.monotonic()
    runs = run_sweep(data, cfg, progress=progress("runs"))
    rows = summarize(runs, data.names)
    seconds = time.monotonic() - t0
    footprint = footprint_px(data.scene, data.split(cfg.holdout)[0]) if cfg.scale else float("nan")
    results["sweep"] = {
        "config": dataclasses.asdict(cfg),
        "rows": rows,
        "runs": [dataclasses.asdict(r) for r in runs],
        "seconds": seconds,
        "footprint_px": footprint,
    }
    plots = {}
    if out is not None:
        from gsbp_ros.evaluation.plots import plot_axis

        for axis in AXES:
            axis_rows = [r for r in rows if r["group"] == axis]
            if len(axis_rows) > 1:
                png = out.with_name(f"{out.stem}_{axis}.png")
                plot_axis(axis_rows, axis, data.names, png)
                plots[axis] = png.name
    lines = [
        "## Robustness sweep",
        "",
        f"{len(runs)} runs in {seconds:.0f} s: {cfg.seeds} seeds (seeds {cfg.seed}.."
        f"{cfg.seed + cfg.seeds - 1}) per condition that draws random numbers, one run for "
        "the others (no view dropped, no label flipped, no noise). The per-view weights are "
        "computed once per view and render scale and reused by every run. Per-object "
        "columns: 3D IoU averaged over the seeds; *worst seed*: the lowest per-seed mean over "
        "objects; *2D*: held-out 2D mIoU of each finish (mode, L2 normalisation).",
        "",
        *sweep_section(rows, data.names, cfg, plots, footprint),
    ]
    return lines, rows


def _baseline(args, data, results: dict, out: Path | None):
    """(markdown lines, results) of back-projection vs distillation."""
    from gsbp_ros.evaluation.comparison import ComparisonConfig, compare
    from gsbp_ros.evaluation.report import comparison_section

    print("back-projection vs distillation ...", file=sys.stderr)
    its = [int(v) for v in parse_levels(args.iterations, "--iterations", integer=True)]
    cfg = ComparisonConfig(
        iterations=its,
        lr=args.lr,
        cg_iterations=args.cg_iterations,
        seed=args.seed,
        holdout=args.holdout,
        engine=args.engine,
    )
    res = compare(data, cfg, progress=lambda m: print(f"  {m}", file=sys.stderr))
    results["baseline"] = [dataclasses.asdict(r) for r in res]
    plot = ""
    if out is not None:
        from gsbp_ros.evaluation.plots import plot_comparison

        png = out.with_name(f"{out.stem}_baseline.png")
        plot_comparison(res, png)
        plot = png.name
    per_view = [
        r.weights_cpu_seconds / r.views for r in res if r.views and r.weights_cpu_seconds > 0
    ]
    extra = ""
    if per_view:
        t = float(np.median(per_view))
        extra = (
            " Distillation during training rasterizes at every iteration instead of reusing "
            f"stored weights: at the median {t * 1000:.0f} ms of CPU time per view's weights "
            f"measured here, {max(its)} iterations would add about {max(its) * t:.0f} s."
        )
    lines = [
        "## Distillation baseline, side by side",
        "",
        "Same scene, same input views, same label maps (as one-hot codes), same query rule. "
        "*Distillation* fits per-Gaussian features f so that their renders match the maps, "
        "min_f Σ_v ||W_v f - F_v||², through the same sparse weights W_v: Adam with one view "
        f"per iteration, features initialised at zero, learning rate {args.lr:g} and eps 1e-15 "
        "(Feature 3DGS's optimiser settings for its feature vectors), scored after "
        f"{', '.join(str(i) for i in sorted(set(its)))} iterations of one run (the paper "
        "trains its Feature 3DGS baseline for 7000; 30000 is the usual length of a 3DGS "
        "schedule). The *least-squares optimum* is the same objective solved by conjugate "
        "gradients, what distillation approaches when run to convergence. Times run from the "
        "splats and label maps to per-Gaussian features and include each method's per-view "
        "weights (the solvers keep all views' weights; back-projection streams them). CPU "
        "time is summed over threads and is the steadier number on a shared machine; peak "
        "memory is the resident set size above the level at the start of each method "
        "(on a GPU: the allocator's peak)." + extra,
        "",
        "Why the iteration count matters: the objective's gradient at f = 0 is "
        "-2 Σ_v W_v^T F_v, the accumulated back-projection, so distillation sets out in "
        "back-projection's direction; the further it runs towards the least-squares fit, "
        "the more each Gaussian's feature is fitted to explain pixels it shares with other "
        "Gaussians, wrong labels included. Compare the rows by iteration count.",
        "",
        *comparison_section(res, data.names, plot),
    ]
    return lines, res


def _run_demo_only(args: argparse.Namespace, out: Path | None) -> int:
    from gsbp_ros.evaluation.demo import demo_rows, rows_markdown

    rows = demo_rows(args.demo, device=args.device, engine=args.engine)
    lines = rows_markdown(rows)
    print("\n".join(lines))
    if out is not None:
        _write(out, ["# gsbp eval --demo", "", *lines, ""], rows, echo=False)
    return 0


def _run_benchmark(args: argparse.Namespace, out: Path | None) -> int:
    from gsbp_ros.evaluation.benchmark import EngineOptions, evaluate_scene, find_scenes, report

    scenes = find_scenes(args.benchmark, scene_file=args.scene_file)
    options = EngineOptions(
        sources=[s.strip() for s in args.sources.split(",") if s.strip()],
        clip_model=args.clip_model,
        dinov2_model=args.dinov2_model,
        label_maps=args.label_maps,
        label_names=[n.strip() for n in args.label_names.split(",") if n.strip()],
        threshold=args.threshold,
        device=args.device,
        engine=args.engine,
        render_scale=args.render_scale,
    )
    results = []
    for i, scene in enumerate(scenes, 1):
        print(f"scene {i}/{len(scenes)}: {scene.name} ({scene.layout})", file=sys.stderr)
        results.append(evaluate_scene(scene, options, log=lambda m: None))
    md = [
        "# Benchmark: 2D mIoU (paper Eq. 7)",
        "",
        f"Sources: {', '.join(options.sources)}; threshold {options.threshold:g}. "
        f"Machine: {_machine()}.",
        "",
        *report(results),
    ]
    _write(out, md, [dataclasses.asdict(r) for r in results])
    return 0


def _write(out: Path | None, md: list[str], results, *, echo: bool = True) -> None:
    from gsbp_ros.fileio import atomic_write

    text = "\n".join(md).rstrip() + "\n"
    if out is None:
        print(text)
        return
    with atomic_write(out, "w") as f:
        if out.suffix.lower() == ".json":
            json.dump(_finite(results), f, indent=2, default=_json_default, allow_nan=False)
            f.write("\n")
        else:
            f.write(text)
    if echo:
        print(f"wrote {out}")


def _finite(obj):
    """NaN (a score without views to score on) as null: strict JSON has no NaN."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
