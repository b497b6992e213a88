"""``gsbp bench``: time the per-view work on the demo scene and record it with the machine.

Results go to a markdown section in ``docs/benchmarks.md`` keyed by the machine, so runs on a
workstation CPU and on a GPU sit side by side. Nothing here asserts a speed: targets live in
this table, not in unit tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads)"
    if device.type == "cuda":
        desc += f", GPU {torch.cuda.get_device_name(device)}"
    return desc


def _time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median wall time of ``fn`` in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_rows(*, device: torch.device, quick: bool = False) -> list[dict[str, str]]:
    from gsbp_ros.demo_scene import make_demo_scene
    from gsbp_ros.raster import compute_view_weights

    demo = make_demo_scene()
    scene = demo.scene.to(device)
    engines = ["torch"] + (["gsplat"] if device.type == "cuda" else [])
    sizes = [(128, 128)] if quick else [(128, 128), (256, 256), (512, 384)]
    repeat = 2 if quick else 5
    rows = []
    for width, height in sizes:
        cams = demo.cameras(num_views=4, width=width, height=height)
        for engine in engines:
            for cam in cams[:1]:
                cam = cam.to_device(device)
                t_w = _time(
                    lambda cam=cam, engine=engine: compute_view_weights(scene, cam, engine=engine),
                    device,
                    repeat,
                )
                w = compute_view_weights(scene, cam, engine=engine)
                pairs = w.weights.numel() if hasattr(w, "weights") else None
                for c, (fh, fw) in ((384, (32, 32)), (384, (height, width)), (16, (height, width))):
                    fmap = torch.randn(fh, fw, c, device=device)
                    # A fresh view each time: the first map of a view pays for folding the
                    # bilinear resize into the weights; later maps of that size reuse it.
                    t_all = _time(
                        lambda fmap=fmap, cam=cam, engine=engine: compute_view_weights(
                            scene, cam, engine=engine
                        ).backproject(fmap),
                        device,
                        repeat,
                    )
                    t_b = max(t_all - t_w, 0.0)
                    t_again = _time(lambda fmap=fmap, w=w: w.backproject(fmap), device, repeat)
                    rows.append(
                        {
                            "engine": engine,
                            "device": device.type,
                            "gaussians": str(scene.num_gaussians),
                            "view": f"{width}x{height}",
                            "pairs": str(pairs) if pairs is not None else "-",
                            "feature map": f"{fh}x{fw}x{c}",
                            "weights (s)": f"{t_w:.3f}",
                            "backproject, first map (s)": f"{t_b:.3f}",
                            "each further map (s)": f"{t_again:.3f}",
                            "total per view (s)": f"{t_all:.3f}",
                        }
                    )
    return rows


def to_markdown(rows: list[dict[str, str]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    from gsbp_ros.engine import resolve_device
    from gsbp_ros.fileio import atomic_write

    device = resolve_device(args.device)
    machine = machine_description(device)
    print(f"benchmarking on {machine}")
    rows = bench_rows(device=device, quick=args.quick)
    table = to_markdown(rows)
    print(table)
    if args.out:
        path = Path(args.out)
        header = f"## {machine}"
        section = (
            f"{header}\n\nMeasured {time.strftime('%Y-%m-%d')} with `gsbp bench"
            f"{' --quick' if args.quick else ''} --device {device.type}` on the demo scene "
            "(median of repeated runs after a warm-up).\n\n" + table + "\n"
        )
        text = path.read_text() if path.exists() else "# Benchmarks\n\n"
        # Replace this machine's previous section, keep the others.
        parts = text.split("\n## ")
        kept = [parts[0].rstrip() + "\n"] + [
            "## " + p.rstrip() + "\n" for p in parts[1:] if not ("## " + p).startswith(header)
        ]
        with atomic_write(path, "w") as f:
            f.write("\n".join([*kept, section]))
        print(f"wrote {path}")
    return 0
