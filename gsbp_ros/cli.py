"""gsbp: ask a 3D Gaussian Splatting scene where things are, from the command line.

examples:
    gsbp demo-scene  --out DIR                     procedural tabletop with ground truth
    gsbp render      --scene S [--cameras C] --view I --out PNG
    gsbp backproject --scene S --cameras C --features-dir D --out F.safetensors
    gsbp features    --scene S [--cameras C] --sources labels,dinov2,clip --out F.safetensors
    gsbp segment     --scene S ... --text mug [--negative table] [--out-ply P] [--png PNG]
    gsbp transfer    --scene S ... --images I1 I2 --masks M1 M2 --labels grasp,contain
    gsbp overlay     --scene S --cameras C --indices sel.json --view I --out PNG
    gsbp grasps      --scene S ... --indices sel.json | --text mug --out grasps.json [--png P]
    gsbp bench       --out docs/benchmarks.md
    gsbp eval        --demo DIR [--robustness] [--baseline] [--out quality.md]
    gsbp eval        --benchmark DIR --sources clip --clip-model M   LERF-Mask / 3D-OVS 2D mIoU

S may be a scene file or a training output folder (Inria output, splatfacto export); without
--cameras the camera file next to it is used (else orbit views) and DINOv2/CLIP run on the
photos found beside it (--images DIR or none to choose). Which files were picked is printed.

Every failure prints one line ``gsbp: error: ...`` and exits non-zero; outputs are written
atomically, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError


class ProgressPrinter:
    """``views 12/40 (30%), ETA 8 s`` on stderr, at most every ``every`` seconds."""

    def __init__(self, label: str = "views", every: float = 1.0) -> None:
        self.label = label
        self.every = every
        self._last = 0.0

    def __call__(self, done: int, total: int, eta: float | None) -> None:
        now = time.monotonic()
        if done != total and now - self._last < self.every:
            return
        self._last = now
        eta_s = f", ETA {eta:.0f} s" if eta is not None else ""
        print(
            f"  {self.label} {done}/{total} ({100 * done // max(total, 1)}%){eta_s}",
            file=sys.stderr,
        )


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


# -- commands --------------------------------------------------------------------------------
def cmd_demo_scene(args: argparse.Namespace) -> int:
    from gsbp_ros.demo_scene import write_demo_scene

    demo = write_demo_scene(
        args.out, num_views=args.views, width=args.width, height=args.height, seed=args.seed
    )
    print(
        f"demo scene: {demo.scene.num_gaussians} Gaussians, {args.views} views "
        f"{args.width}x{args.height} -> {args.out}"
    )
    return 0


def _floats(items: list[str], n: int, flag: str) -> np.ndarray:
    """``["1,2,3", ...]`` -> [len, n] float64, with a clear error for anything else."""
    try:
        rows = [[float(v) for v in item.split(",")] for item in items]
    except ValueError as exc:
        raise GsbpError(f"{flag} takes {n} comma-separated numbers: {exc}") from exc
    if any(len(r) != n for r in rows):
        raise GsbpError(f"{flag} takes exactly {n} comma-separated numbers, got {items}")
    return np.array(rows, dtype=np.float64).reshape(-1, n)


def _scene_and_cameras(scene_path: str, cameras: str, views: int, size: int):
    """The scene and its cameras (next to it when ``cameras`` is '', else ``views`` orbit
    views, or an error when ``views`` is 0); says on stderr which files it picked."""
    from gsbp_ros.cameras import cameras_for_scene
    from gsbp_ros.captures import find_capture

    capture = find_capture(scene_path, cameras, "none")
    scene = capture.load_scene()
    cams = capture.load_cameras()
    for line in capture.describe(photos=False):
        print(f"  {line}", file=sys.stderr)
    if cams is None and not views:
        raise GsbpError(f"no cameras for {scene_path}: pass --cameras")
    if cams is None:
        cams = cameras_for_scene(scene, num_views=views, width=size, height=size)
    return scene, cams


def cmd_render(args: argparse.Namespace) -> int:
    import torch

    from gsbp_ros.overlay import save_png
    from gsbp_ros.raster import render_rgb

    scene, cams = _scene_and_cameras(args.scene, args.cameras, args.views, args.size)
    cam = _pick_view(cams, args.view)
    if args.scale != 1.0:
        cam = cam.scaled(args.scale)
    bg = torch.tensor(_color(args.background))
    rgb = render_rgb(scene, cam, background=bg, engine=args.engine, options=_raster_options(args))
    save_png((rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8), args.out)
    print(f"rendered {cam.name} ({cam.width}x{cam.height}) -> {args.out}")
    return 0


def _pick_view(cams, view: str):
    from gsbp_ros.cameras import pick_view

    return pick_view(cams, view)


def _color(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3:
        raise GsbpError(f"--background takes r,g,b in 0..1, got {text!r}")
    return (parts[0], parts[1], parts[2])


def _join_torchrun(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process; joins torchrun's process group if any.

    Under ``torchrun --nproc-per-node K`` each rank back-projects every K-th view and the
    accumulators are all-reduced (NCCL between GPUs, one per rank; gloo on CPUs). A failing
    rank makes torchrun stop the others, so nobody waits forever in the reduction.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world, device


def cmd_backproject(args: argparse.Namespace) -> int:
    rank, world, device_name = _join_torchrun(args.device)
    try:
        return _backproject(args, rank, world, device_name)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _backproject(args: argparse.Namespace, rank: int, world: int, device_name: str) -> int:
    from gsbp_ros.backproject import NpyFeatureMaps, backproject
    from gsbp_ros.engine import resolve_device

    scene, cams = _scene_and_cameras(args.scene, args.cameras, 0, 0)
    maps = NpyFeatureMaps(args.features_dir)
    have = [c for c in cams if (maps.folder / f"{c.stem}.npy").exists()]
    for c in cams:
        if c not in have:
            logging.warning("view %s has no feature map %s.npy: skipped", c.name, c.stem)
    for stem in maps.unused(cams):
        logging.warning("feature map %s.npy matches no camera", stem)
    if not have:
        raise GsbpError(f"none of the {len(cams)} views has a feature map in {args.features_dir}")
    from gsbp_ros.raster import engine_report

    device = resolve_device(device_name)
    shard = f" (rank {rank} of {world})" if world > 1 else ""
    options = _raster_options(args)
    print(
        f"back-projecting {len(have)} views onto {scene.num_gaussians} Gaussians on {device}"
        f"{shard}; raster engine {engine_report(args.engine, device)}"
    )
    t0 = time.monotonic()
    field = backproject(
        scene,
        have,
        {"default": maps},
        mode=args.mode,
        normalize=args.normalize,
        device=device,
        engine=args.engine,
        options=options,
        max_pairs=args.max_pairs or None,
        render_scale=args.render_scale,
        progress=ProgressPrinter(label=f"rank {rank} views" if world > 1 else "views"),
        rank=rank,
        world_size=world,
    )
    if rank != 0:
        return 0
    field.save(args.out)
    dt = time.monotonic() - t0
    seen = int((field.weights["default"] > 0).sum())
    c = field.features["default"].shape[1]
    print(
        f"wrote {args.out}: features [{scene.num_gaussians}, {c}], weight "
        f"[{scene.num_gaussians}] ({seen} seen); {dt:.1f} s, {dt / len(have):.3f} s/view"
    )
    return 0


def _engine_config(args: argparse.Namespace):
    from gsbp_ros.engine import EngineConfig

    return EngineConfig(
        scene_path=args.scene,
        cameras_path=args.cameras,
        cameras_transform=_transform_arg(args.cameras_transform),
        device=args.device,
        feature_sources=_csv(args.sources),
        dinov2_model=args.dinov2_model,
        clip_model=args.clip_model,
        label_maps_dir=args.label_maps,
        label_names=_label_names(args.label_names, args.label_maps),
        label_unlabelled=args.unlabelled,
        cache_dir=args.cache_dir,
        max_views=args.max_views,
        render_scale=args.render_scale,
        num_generated_views=args.views,
        generated_view_size=args.size,
        mode=args.mode,
        feature_input_size=args.input_size,
        output_dir=str(Path(args.output_dir).resolve()),
        engine=args.engine,
        raster=_raster_options(args),
        max_pairs=args.max_pairs,
        images_dir=args.capture_images,
        allow_downloads=args.allow_downloads,
    )


def _transform_arg(text: str) -> list[float]:
    """``--cameras-transform``: 16 comma-separated numbers or a .npy/.txt file of a 4x4."""
    if not text:
        return []
    path = Path(text)
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif path.suffix == ".txt":
            values = np.loadtxt(path)
        else:
            values = np.array([float(v) for v in text.split(",")])
    except (OSError, ValueError) as exc:
        raise GsbpError(f"--cameras-transform: {exc}") from exc
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != 16:
        raise GsbpError(f"--cameras-transform needs a 4x4 matrix (16 numbers), got {values.size}")
    return values.tolist()


def _label_names(text: str, label_maps: str) -> list[str]:
    """Names from --label-names, or from a names.json beside/above the label maps."""
    from gsbp_ros.features.labels import label_names_near

    if text:
        return _csv(text)
    return label_names_near(label_maps) if label_maps else []


def _start_engine(args: argparse.Namespace):
    from gsbp_ros.engine import GsbpEngine

    def log(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr)

    engine = GsbpEngine(_engine_config(args), log=log)
    engine.start()
    st = engine.status()
    if st.state != "ready":
        raise GsbpError(st.message)
    if not st.active_sources:
        reasons = "; ".join(f"{k}: {v}" for k, v in st.inactive_sources.items())
        raise GsbpError(f"no feature source could be loaded ({reasons})")
    return engine


def cmd_features(args: argparse.Namespace) -> int:
    engine = _start_engine(args)
    engine.field.save(args.out)
    st = engine.status()
    dims = {n: int(t.shape[1]) for n, t in engine.field.features.items()}
    print(f"wrote {args.out}: sources {dims}; start-up {st.startup_s:.1f} s")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    engine = _start_engine(args)
    if args.text:
        sel = engine.segment_text(_csv(args.text), _csv(args.negative), args.threshold)
    else:
        pts = _floats(args.point, 3, "--point").reshape(-1, 3)
        neg = _floats(args.negative_point, 3, "--negative-point").reshape(-1, 3)
        if args.pixel:
            cam = _pick_view(engine.cameras, args.view)
            pixels = _floats(args.pixel, 2, "--pixel").astype(np.int64)
            pts = np.concatenate([pts, engine.pixels_to_points(cam, pixels)])
            print(f"  pixels of view {cam.name} -> points {np.round(pts, 3).tolist()}")
        sel = engine.segment_points(pts, neg, args.threshold)
    print(
        f"segment {sel.name!r}: {sel.indices.size} of {engine.scene.num_gaussians} Gaussians "
        f"({sel.info.get('source')}, {1000 * float(sel.info.get('latency_s', 0)):.1f} ms)"
    )
    if sel.summary is not None:
        c = sel.summary.centroid
        print(f"  centroid ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f})")
    if args.indices_out:
        from gsbp_ros.fileio import atomic_write

        with atomic_write(args.indices_out, "w") as f:
            json.dump({"name": sel.name, "indices": sel.indices.tolist()}, f)
    if args.out_ply:
        path, n = engine.save_region(
            args.out_ply, selection=sel, complement=args.complement, cleanup=args.cleanup
        )
        print(f"  wrote {n} Gaussians -> {path}")
    if args.png:
        _write_overlay(engine, sel, args.png, args.view, args)
    return 0


def _write_overlay(engine, sel, png: str, view: str, args: argparse.Namespace) -> None:
    """Text: the paper's 2D rule (Eq. 7) on the rendered field. Points: the 3D selection."""

    from gsbp_ros.overlay import overlay_mask, save_png, selection_pixels
    from gsbp_ros.raster import compute_view_weights, render_rgb

    cam = _pick_view(engine.cameras, view)
    if args.text:
        mask, rgb = engine.text_mask_2d(_csv(args.text), _csv(args.negative), args.threshold, cam)
    else:
        cfg = engine.config
        w = compute_view_weights(engine.scene, cam, engine=cfg.engine, options=cfg.raster)
        rgb = render_rgb(engine.scene, cam, weights=w, background=(1.0, 1.0, 1.0)).numpy()
        mask = selection_pixels(w, sel.indices)
    save_png(overlay_mask(rgb, mask), png)
    print(f"  overlay of view {cam.name} ({int(mask.sum())} pixels) -> {png}")


def cmd_overlay(args: argparse.Namespace) -> int:
    """Tint the pixels where selected Gaussians dominate the render of one view."""

    from gsbp_ros.overlay import color_for, overlay_mask, save_png, selection_pixels
    from gsbp_ros.raster import compute_view_weights, render_rgb

    scene, cams = _scene_and_cameras(args.scene, args.cameras, 24, 256)
    cam = _pick_view(cams, args.view)
    if args.scale != 1.0:
        cam = cam.scaled(args.scale)
    doc = json.loads(Path(args.indices).read_text())
    keys = _csv(args.key) or list(doc)
    w = compute_view_weights(scene, cam, engine=args.engine, options=_raster_options(args))
    rgb = render_rgb(scene, cam, weights=w, background=(1.0, 1.0, 1.0)).numpy()
    # Wash out everything that is not selected so the selections stand out.
    out = ((0.45 * rgb + 0.55) * 255 + 0.5).astype(np.uint8)
    for i, key in enumerate(keys):
        if key not in doc:
            raise GsbpError(f"{args.indices} has no selection {key!r} (has {', '.join(doc)})")
        idx = np.asarray(doc[key] if isinstance(doc[key], list) else doc[key]["indices"])
        if idx.size and (idx.min() < 0 or idx.max() >= scene.num_gaussians):
            raise GsbpError(f"selection {key!r} has indices outside [0, {scene.num_gaussians})")
        mask = selection_pixels(w, idx)
        full = (rgb * 255 + 0.5).astype(np.uint8)
        out[mask] = overlay_mask(full, mask, color=color_for(i), alpha=0.8)[mask]
        rgb255 = tuple(round(255 * c) for c in color_for(i))
        print(f"  {key}: {int(mask.sum())} pixels in view {cam.name}, colour rgb{rgb255}")
    save_png(out, args.out)
    print(f"overlay -> {args.out}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.images import read_label_image, read_rgb_image

    engine = _start_engine(args)
    images = [read_rgb_image(p) for p in args.images]
    masks = [read_label_image(p) for p in args.masks]
    cams = None
    if args.source_cameras:
        all_cams = {c.stem: c for c in load_cameras(args.source_cameras)}
        cams = []
        for p in args.masks:
            stem = Path(p).stem
            if stem not in all_cams:
                raise GsbpError(f"no camera named {stem!r} in {args.source_cameras}")
            cams.append(all_cams[stem])
    result = engine.transfer_affordance(images, masks, _csv(args.labels), args.k, cams)
    out = Path(args.out)
    summary = []
    for region in result.regions:
        path, n = engine.save_region(str(out / f"{region.name}.ply"), selection=region)
        summary.append({"label": region.name, "count": n, "ply": path})
        print(f"  {region.name}: {n} Gaussians -> {path}")
    from gsbp_ros.fileio import atomic_write

    with atomic_write(out / "transfer.json", "w") as f:
        json.dump(summary, f, indent=2)
    return 0


def cmd_grasps(args: argparse.Namespace) -> int:
    from gsbp_ros.grasp_command import run_grasps

    return run_grasps(args, _start_engine(args))


def cmd_bench(args: argparse.Namespace) -> int:
    from gsbp_ros.bench import run_bench

    return run_bench(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from gsbp_ros.evaluation.command import run_eval

    return run_eval(args, progress=ProgressPrinter)


# -- parser ----------------------------------------------------------------------------------
def _add_raster_args(p: argparse.ArgumentParser) -> None:
    """How the scene is rasterized: the engine and the settings the scene was trained with."""
    from gsbp_ros.raster import ENGINES, RASTERIZE_MODES, RasterOptions

    d = RasterOptions()
    p.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="raster engine (auto: gsplat on CUDA, numba on the CPU, torch where neither runs)",
    )
    p.add_argument(
        "--rasterize-mode",
        default=d.rasterize_mode,
        choices=RASTERIZE_MODES,
        help="antialiased for scenes trained with gsplat's antialiased mode / Mip-Splatting",
    )
    p.add_argument("--eps2d", type=float, default=d.eps2d, help="2D low-pass of the splats")
    p.add_argument("--near-plane", type=float, default=d.near_plane)
    p.add_argument("--far-plane", type=float, default=d.far_plane)
    p.add_argument(
        "--max-pairs",
        type=int,
        default=0,
        help="memory bound: (Gaussian, pixel) pairs held at once per view (0 = engine default)",
    )


def _raster_options(args: argparse.Namespace):
    from gsbp_ros.raster import RasterOptions

    return RasterOptions(
        near_plane=args.near_plane,
        far_plane=args.far_plane,
        eps2d=args.eps2d,
        rasterize_mode=args.rasterize_mode,
    )


SCENE_HELP = (
    "scene file (.ply, .splat, gsplat checkpoint) or training output folder (Inria "
    "point_cloud/iteration_N, splatfacto export with dataparser_transforms.json)"
)
CAMERAS_HELP = (
    "COLMAP model, transforms.json, transforms_train.json or cameras.json; '' = found next "
    "to the scene, else orbit views; 'orbit' = orbit views"
)


def _add_engine_args(p: argparse.ArgumentParser, *, images_flag: str = "--images") -> None:
    p.add_argument("--scene", required=True, help=SCENE_HELP)
    p.add_argument("--cameras", default="", help=CAMERAS_HELP)
    p.add_argument(
        images_flag,
        dest="capture_images",
        default="",
        help="photos of the cameras for DINOv2/CLIP (matched by image name); '' = found next "
        "to the cameras, 'none' = renders only",
    )
    p.add_argument(
        "--allow-downloads",
        action="store_true",
        help="let Hugging Face hub ids download when not cached (default: local files only)",
    )
    p.add_argument(
        "--cameras-transform",
        default="",
        help="4x4 similarity for the camera poses (16 numbers or .npy/.txt), e.g. gsplat's "
        "normalize_world_space transform",
    )
    p.add_argument("--sources", default="labels", help="comma list of dinov2, clip, labels")
    p.add_argument("--dinov2-model", default="facebook/dinov2-small")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16")
    p.add_argument("--label-maps", default="", help="folder of <image stem>.png|.npy label maps")
    p.add_argument("--label-names", default="", help="comma list (default: names.json nearby)")
    p.add_argument(
        "--unlabelled",
        default="background",
        choices=["background", "ignore"],
        help="what label-map value 0 votes for: an implicit background label, or nothing "
        "(labels cover the scene, gaps mean unknown)",
    )
    p.add_argument("--cache-dir", default="", help="feature-field cache folder ('' = none)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_raster_args(p)
    p.add_argument("--mode", default="expected", choices=["expected", "accumulated"])
    p.add_argument("--max-views", type=int, default=0)
    p.add_argument("--render-scale", type=float, default=1.0)
    p.add_argument("--input-size", type=int, default=448, help="feature model input long side")
    p.add_argument("--views", type=int, default=24, help="generated views when no cameras")
    p.add_argument("--size", type=int, default=256, help="generated view size")
    p.add_argument("--output-dir", default=".", help="folder that outputs may be written below")


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\nEvery failure")[0]
    ap = argparse.ArgumentParser(
        prog="gsbp",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-scene", help="write the procedural demo tabletop")
    p.add_argument("--out", required=True)
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_scene)

    p = sub.add_parser("render", help="render one view to PNG")
    p.add_argument("--scene", required=True, help=SCENE_HELP)
    p.add_argument("--cameras", default="", help=CAMERAS_HELP)
    p.add_argument("--view", default="0", help="index or image name")
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--background", default="1,1,1")
    p.add_argument("--out", required=True)
    _add_raster_args(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("backproject", help="back-project precomputed .npy feature maps")
    p.add_argument("--scene", required=True, help=SCENE_HELP)
    p.add_argument("--cameras", default="", help=CAMERAS_HELP.replace(", else orbit views", ""))
    p.add_argument("--features-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="expected", choices=["expected", "accumulated"])
    p.add_argument("--normalize", action="store_true", help="L2-normalise per Gaussian")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--render-scale", type=float, default=1.0, help="views at this fraction of their size"
    )
    _add_raster_args(p)
    p.set_defaults(func=cmd_backproject)

    p = sub.add_parser("features", help="build a feature field from feature models/label maps")
    _add_engine_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("segment", help="segment by text, 3D points or pixels of a view")
    _add_engine_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", default="", help="comma list of positive prompts")
    g.add_argument("--point", action="append", default=[], help="x,y,z (repeatable)")
    g.add_argument("--pixel", action="append", default=[], help="u,v in --view (repeatable)")
    p.add_argument("--negative", default="", help="comma list of negative prompts")
    p.add_argument("--negative-point", action="append", default=[], help="x,y,z")
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--out-ply", default="")
    p.add_argument("--complement", action="store_true", help="write everything else instead")
    p.add_argument("--cleanup", action="store_true", help="drop statistical outliers (open3d)")
    p.add_argument("--indices-out", default="")
    p.add_argument("--png", default="", help="overlay of the selection on a view")
    p.add_argument("--view", default="0", help="view for --png and --pixel (index or name)")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("transfer", help="affordance transfer from annotated source images")
    _add_engine_args(p, images_flag="--scene-images")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--masks", nargs="+", required=True)
    p.add_argument("--labels", required=True, help="comma list: mask value v -> labels[v-1]")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--source-cameras", default="", help="poses of the sources in this scene")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("overlay", help="tint selections (indices JSON) on a rendered view")
    p.add_argument("--scene", required=True, help=SCENE_HELP)
    p.add_argument("--cameras", default="", help=CAMERAS_HELP)
    p.add_argument("--indices", required=True, help='JSON: {"name": [indices], ...}')
    p.add_argument("--key", default="", help="comma list of selections to draw (default all)")
    p.add_argument("--view", default="0")
    p.add_argument("--scale", type=float, default=1.0, help="render at this times the size")
    p.add_argument("--out", required=True)
    _add_raster_args(p)
    p.set_defaults(func=cmd_overlay)

    p = sub.add_parser("grasps", help="ranked parallel-jaw grasps on a selection or a prompt")
    _add_engine_args(p)
    from gsbp_ros.grasp_command import add_arguments as add_grasp_arguments

    add_grasp_arguments(p)
    p.set_defaults(func=cmd_grasps)

    p = sub.add_parser("bench", help="our engines vs the paper's method; a markdown table")
    from gsbp_ros.bench import add_arguments as add_bench_arguments

    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "eval",
        help="accuracy, robustness sweep, distillation baseline, benchmark protocol",
        description="Accuracy against ground truth (--demo), robustness to degraded label maps "
        "(--robustness), back-projection vs distillation (--baseline), and the 2D mIoU "
        "protocol of LERF-Mask / 3D-OVS layouts (--benchmark; bring the data). "
        "See docs/quality.md.",
    )
    from gsbp_ros.evaluation.command import add_eval_arguments

    add_eval_arguments(p)
    p.set_defaults(func=cmd_eval)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="gsbp: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except GsbpError as exc:
        print(f"gsbp: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"gsbp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gsbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
