"""``gsbp bench``: our lifting engines against the paper's method, side by side, in one run.

Every row runs in a fresh process (:mod:`gsbp_ros.bench.worker`) so that its peak memory is
its own. Results go to a markdown section of ``docs/benchmarks.md`` keyed by the machine, so
runs on a workstation CPU and on a GPU sit side by side. Nothing here asserts a speed:
targets live in that document, not in unit tests.

The paper's method on a CPU is slow enough that a full view of a large scene would take many
minutes; when its first 32-channel chunk alone takes longer than ``--baseline-full-below``
seconds, the row reports that chunk's time as a measured lower bound (">= x s, 1 of 12
chunks"), and the ratio as a lower bound too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gsbp_ros.hostinfo import cpu_model


def machine_description(device: torch.device) -> str:
    cpu = cpu_model()
    threads = torch.get_num_threads()
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads)"
    if device.type == "cuda":
        desc += f", GPU {torch.cuda.get_device_name(device)}"
    return desc


@dataclass
class Plan:
    device: str
    sizes: list[int]
    resolutions: list[tuple[int, int]]
    extra: list[tuple[int, int, int]]  # (gaussians, width, height) rows without the grid
    channels: int
    map_hw: tuple[int, int]
    views: int
    baseline: bool
    baseline_full_below: float
    lift: list[tuple[int, int, int, int]]  # (gaussians, width, height, views)
    timeout: float
    precision_views: int = 100  # float32 vs float64 accumulators over this many views (0: skip)


def plan_from_args(args: argparse.Namespace, device: torch.device) -> Plan:
    if args.quick:
        return Plan(
            device=device.type,
            sizes=[20_000],
            resolutions=[(320, 240)],
            extra=[],
            channels=64,
            map_hw=(17, 23),
            views=2,
            baseline=not args.no_baseline,
            baseline_full_below=args.baseline_full_below,
            lift=[],
            timeout=args.timeout,
            precision_views=0,
        )
    lift = [(300_000, 640, 480, 24)] if device.type == "cpu" else [(1_000_000, 640, 480, 100)]
    return Plan(
        device=device.type,
        sizes=[int(s) for s in args.sizes.split(",")],
        resolutions=[tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")],
        extra=[(23_000, 1440, 1440)],
        channels=args.channels,
        map_hw=tuple(int(v) for v in args.map.split("x")),
        views=args.views,
        baseline=not args.no_baseline,
        baseline_full_below=args.baseline_full_below,
        lift=lift,
        timeout=args.timeout,
    )


def run_worker(spec: dict, timeout: float) -> dict:
    """One measurement in a fresh process; ``{"error": ...}`` if it failed or ran out of time."""
    cmd = [sys.executable, "-m", "gsbp_ros.bench.worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ours(device: str) -> str:
    return "gsplat" if device == "cuda" else "numba"


def measure(plan: Plan, log=print, on_row=None) -> list[dict]:
    """Run the plan's rows; returns one dict per row (method, sizes, results).

    ``on_row(rows)`` is called after every row (to save partial results of a long run).
    """
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(rows)

    grid = [(n, w, h) for n in plan.sizes for (w, h) in plan.resolutions] + plan.extra
    methods = [_ours(plan.device)] + (["torch"] if plan.device == "cuda" else [])
    for n, w, h in grid:
        base = {
            "gaussians": n,
            "width": w,
            "height": h,
            "channels": plan.channels,
            "map": list(plan.map_hw),
            "views": plan.views,
            "device": plan.device,
        }
        ours = None
        for method in methods:
            log(f"bench: {method} {n} Gaussians {w}x{h} ...")
            res = run_worker({**base, "method": method}, plan.timeout)
            add({**base, "method": method, **res})
            ours = ours or res
        if plan.baseline:
            log(f"bench: paper's method {n} Gaussians {w}x{h} ...")
            spec = {**base, "method": "paper", "views": 1, "max_chunks": 1}
            res = run_worker(spec, plan.timeout)
            if "error" not in res and res["median_s"] <= plan.baseline_full_below:
                res = run_worker({**spec, "max_chunks": None}, plan.timeout)
            row = {**base, "method": "paper", **res}
            if "error" not in res and ours and "error" not in ours:
                row["ratio"] = res["median_s"] / ours["median_s"]
            add(row)
    for n, w, h, v in plan.lift:
        log(f"bench: lift {n} Gaussians x {v} views {w}x{h} ...")
        spec = {
            "gaussians": n,
            "width": w,
            "height": h,
            "channels": plan.channels,
            "map": list(plan.map_hw),
            "views": v,
            "device": plan.device,
            "method": "lift",
        }
        add({**spec, **run_worker(spec, plan.timeout)})
    if plan.precision_views:
        log(f"bench: float32 vs float64 accumulators over {plan.precision_views} views ...")
        spec = {
            "gaussians": 20154,
            "width": 320,
            "height": 240,
            "channels": 64,
            "map": list(plan.map_hw),
            "views": plan.precision_views - 1,
            "device": plan.device,
            "method": "precision",
        }
        add({**spec, **run_worker(spec, plan.timeout)})
    return rows


def _row_key(row: dict) -> tuple:
    return (row["method"], row["gaussians"], row["width"], row["height"], row["device"])


def merge_rows(previous: list[dict], new: list[dict]) -> list[dict]:
    """``previous`` rows with those measured again replaced (same method, scene, view and
    device), in ``previous``'s order; new kinds of rows go at the end. Ratios are redone
    against the ours-row of the same scene and view."""
    fresh = {_row_key(r): r for r in new}
    out = [fresh.pop(_row_key(r), r) for r in previous] + list(fresh.values())
    ours = {
        _row_key(r)[1:]: r for r in out if r["method"] in ("numba", "gsplat") and "error" not in r
    }
    for r in out:
        if r["method"] == "paper" and "error" not in r and _row_key(r)[1:] in ours:
            r["ratio"] = r["median_s"] / ours[_row_key(r)[1:]]["median_s"]
    return out


def _gb(row: dict) -> str:
    if "gpu_peak_gb" in row:
        return f"{row['gpu_peak_gb']:.2f} (GPU)"
    return f"{row['peak_rss_gb']:.2f}"


def to_markdown(rows: list[dict]) -> str:
    per_view = [r for r in rows if r["method"] not in ("lift", "precision")]
    lines = [
        "| Gaussians | view | feature map | method | time per view (s) | peak memory (GB) "
        "| weights per view | paper / ours | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in per_view:
        fmap = f"{r['map'][0]}x{r['map'][1]}x{r['channels']}"
        name = {
            "numba": "ours (numba, CPU)",
            "gsplat": "ours (gsplat kernels, CUDA)",
            "torch": f"torch engine ({r['device']})",
            "paper": "paper: autograd"
            + (" through gsplat" if r["device"] == "cuda" else ", torch tile compositor"),
        }[r["method"]]
        if "error" in r:
            lines.append(
                f"| {r['gaussians']} | {r['width']}x{r['height']} | {fmap} | {name} "
                f"| not measured: {r['error']} | | | | |"
            )
            continue
        t = f"{r['median_s']:.3f}"
        ratio = f"{r['ratio']:.1f}x" if "ratio" in r else ""
        partial = r.get("chunks_measured", 0) < r.get("chunks_total", 0)
        if partial:
            done, total = r["chunks_measured"], r["chunks_total"]
            t = f">= {r['median_s']:.1f} (first {done} of {total} chunks)"
            ratio = f">= {ratio}" if ratio else ""
        lines.append(
            f"| {r['gaussians']} | {r['width']}x{r['height']} | {fmap} | {name} | {t} "
            f"| {_gb(r)} | {r.get('nnz', '')} | {ratio} | {r.get('load_before', 0):.1f} |"
        )
    lifts = [r for r in rows if r["method"] == "lift"]
    if lifts:
        lines += [
            "",
            "| lift end to end (`backproject`) | views | feature map | total (s) | per view (s) "
            "| peak memory (GB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in lifts:
            fmap = f"{r['map'][0]}x{r['map'][1]}x{r['channels']}"
            what = f"{r['gaussians']} Gaussians, {r['width']}x{r['height']}"
            if "error" in r:
                lines.append(f"| {what} | {r['views']} | {fmap} | not measured: {r['error']} | | |")
                continue
            lines.append(
                f"| {what} | {r['views']} | {fmap} | {r['total_s']:.1f} | {r['median_s']:.3f} "
                f"| {_gb(r)} |"
            )
    for r in rows:
        if r["method"] != "precision":
            continue
        if "error" in r:
            lines += ["", f"Accumulator precision: not measured: {r['error']}"]
            continue
        lines += [
            "",
            f"Accumulator precision: {r['views']} views of {r['gaussians']} Gaussians at "
            f"{r['width']}x{r['height']}, {r['channels']} channels, each view its own map: "
            f"expected features from float32 sums differ from float64 sums by at most "
            f"{r['max_abs_error']:.2e} (values up to {r['max_value']:.2f}).",
        ]
    return "\n".join(lines)


def _grasp_section() -> str:
    from gsbp_ros.bench.grasps import grasp_bench_rows

    rows = grasp_bench_rows()
    cols = list(rows[0])
    lines = ["Grasp planning on a region of ~3,000 Gaussians (the demo's whole mug):", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _startup_section(args: argparse.Namespace) -> str:
    from gsbp_ros.bench.startup import measure_startup, ros_package_available

    head = "Node start-up on the demo scene, process start to 'services up' (median of 5):"
    if not ros_package_available():
        return head + " not measured: the ROS package is not built (source install/setup.bash)."
    try:
        res = measure_startup(repeat=5)
    except (RuntimeError, OSError) as exc:
        return f"{head} not measured: {exc}"
    lines = [head, "", "| configuration | start-up (s) | runs (s) |", "|---|---|---|"]
    for name, r in res.items():
        runs = ", ".join(f"{t:.1f}" for t in r["runs_s"])
        lines.append(f"| {name} | {r['median_s']:.1f} | {runs} |")
    return "\n".join(lines)


def write_section(path: Path, machine: str, body: str) -> None:
    """Replace this machine's section of the benchmarks document, keep the others."""
    from gsbp_ros.fileio import atomic_write

    header = f"## {machine}"
    section = f"{header}\n\n{body}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    parts = text.split("\n## ")
    kept = [parts[0].rstrip() + "\n"] + [
        "## " + p.rstrip() + "\n" for p in parts[1:] if not ("## " + p).startswith(header)
    ]
    with atomic_write(path, "w") as f:
        f.write("\n".join([*kept, section]))


def run_bench(args: argparse.Namespace) -> int:
    from gsbp_ros.engine import resolve_device

    device = resolve_device(args.device)
    machine = machine_description(device)
    print(f"benchmarking on {machine}", flush=True)
    plan = plan_from_args(args, device)
    t0 = time.monotonic()

    def save(rows: list[dict]) -> None:
        # after every row, atomically: a run cut off by a time limit keeps what it measured
        if args.json:
            from gsbp_ros.fileio import atomic_write

            with atomic_write(Path(args.json), "w") as f:
                f.write(json.dumps(rows, indent=1))

    rows = measure(plan, log=lambda m: print(m, file=sys.stderr, flush=True), on_row=save)
    if args.update:
        rows = merge_rows(json.loads(Path(args.update).read_text()), rows)
        save(rows)
    table = to_markdown(rows)
    if not args.quick:
        table += "\n\n" + _grasp_section() + "\n\n" + _startup_section(args)
    print(table)
    if args.out:
        cmd = "gsbp bench" + (" --quick" if args.quick else "") + f" --device {device.type}"
        body = (
            f"Measured {time.strftime('%Y-%m-%d')} with `{cmd}` in {time.monotonic() - t0:.0f} s "
            "(each row a fresh process; time per view = median over the views after a "
            "warm-up view; peak memory = the process's peak RSS, or torch's peak CUDA "
            "allocation; load = the machine's 1-minute load average when the row started).\n\n"
            + table
        )
        write_section(Path(args.out), machine, body)
        print(f"wrote {args.out}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="", help="markdown file to update (e.g. docs/benchmarks.md)")
    p.add_argument("--json", default="", help="also write the raw rows as JSON")
    p.add_argument(
        "--update",
        default="",
        help="rows of an earlier run (its --json): keep them, replacing the rows measured now",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="one small row (a smoke test)")
    p.add_argument("--sizes", default="20000,300000,1000000", help="Gaussians per scene")
    p.add_argument("--resolutions", default="640x480,1440x1080")
    p.add_argument("--channels", type=int, default=384)
    p.add_argument("--map", default="34x46", help="feature map H'xW' (DINOv2 patches)")
    p.add_argument("--views", type=int, default=3, help="timed views per row")
    p.add_argument("--no-baseline", action="store_true", help="skip the paper's method")
    p.add_argument(
        "--baseline-full-below",
        type=float,
        default=30.0,
        help="run every chunk of the paper's method when its first takes at most this (s)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per row")
