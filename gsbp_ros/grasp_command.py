"""``gsbp grasps``: ranked parallel-jaw grasps on a region, as JSON and optionally a PNG.

The region comes from a selection file (``--indices``: the ``{"name", "indices"}`` that
``gsbp segment --indices-out`` writes, a ``{"key": [indices], ...}`` table with ``--key``, or
a plain list) or from a text prompt (``--text``). ``--out`` receives a list of
``{"position": [x, y, z], "quaternion_xyzw": [...], "width": w, "score": s, ...}`` in the
scene's frame, best first; ``--png`` draws the grippers on a render of a view.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError
from gsbp_ros.gripper import ParallelJawGripper
from gsbp_ros.results import GraspSet, Selection

_GRIPPER = ParallelJawGripper()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own options (the engine's come from the CLI)."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--indices", default="", help="selection JSON (see gsbp segment)")
    g.add_argument("--text", default="", help="comma list of prompts to segment first")
    p.add_argument("--key", default="", help="which selection of an --indices table")
    p.add_argument("--negative", default="", help="comma list of negative prompts (--text)")
    p.add_argument("--threshold", type=float, default=0.0, help="score threshold (--text)")
    p.add_argument("--out", required=True, help="grasps.json (list, best first, scene frame)")
    p.add_argument("--png", default="", help="draw the grippers on a render of --view")
    p.add_argument("--view", default="auto", help="index, image name, or auto")
    p.add_argument("--scale", type=float, default=3.0, help="render --png at this times the size")
    gr = p.add_argument_group("gripper (scene units)")
    for f in dataclasses.fields(ParallelJawGripper):
        gr.add_argument(
            f"--{f.name.replace('_', '-')}", type=float, default=getattr(_GRIPPER, f.name)
        )
    p.add_argument("--max-grasps", type=int, default=10)
    p.add_argument("--num-contacts", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def gripper_from_args(args: argparse.Namespace) -> ParallelJawGripper:
    """The gripper of the command line: one option per field of :class:`ParallelJawGripper`."""
    return ParallelJawGripper(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(ParallelJawGripper)}
    )


def read_selection(path: str, key: str = "") -> Selection:
    """A selection file -> :class:`Selection`. An entry is a list of indices or a
    ``{"indices": [...], "scores": [...]}`` object (scores default to 1)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GsbpError(f"cannot read the selection {path}: {exc}") from exc
    name = key or Path(path).stem
    if isinstance(doc, dict) and "indices" in doc and not key:
        name, entry = str(doc.get("name", name)), doc
    elif isinstance(doc, dict):
        if not key:
            raise GsbpError(f"{path} holds several selections ({', '.join(doc)}): pass --key")
        if key not in doc:
            raise GsbpError(f"{path} has no selection {key!r} (has {', '.join(doc)})")
        entry = doc[key]
    else:
        entry = doc
    values = entry["indices"] if isinstance(entry, dict) else entry
    scores = entry.get("scores") if isinstance(entry, dict) else None
    try:
        idx = np.asarray(values, dtype=np.int64).reshape(-1)
        sc = np.ones(idx.size) if scores is None else np.asarray(scores, np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise GsbpError(f"{path}: indices must be integers and scores numbers") from exc
    if sc.shape != idx.shape:
        raise GsbpError(f"{path}: {idx.size} indices but {sc.size} scores")
    idx, first = np.unique(idx, return_index=True)
    return Selection(name, idx, sc[first].astype(np.float32))


def run_grasps(args: argparse.Namespace, engine) -> int:
    """Plan, print, write ``--out`` (and ``--png``). ``engine``: a started GsbpEngine."""
    from gsbp_ros.fileio import atomic_write
    from gsbp_ros.grasps import GraspOptions

    if args.text:
        prompts = [t.strip() for t in args.text.split(",") if t.strip()]
        negatives = [t.strip() for t in args.negative.split(",") if t.strip()]
        sel = engine.segment_text(prompts, negatives, args.threshold)
    else:
        sel = read_selection(args.indices, args.key)
    gripper = gripper_from_args(args)
    options = GraspOptions(
        max_grasps=args.max_grasps, num_contacts=args.num_contacts, seed=args.seed
    )
    grasps = engine.plan_grasps(sel, gripper=gripper, options=options)
    with atomic_write(args.out, "w") as f:
        json.dump(grasps.to_json(), f, indent=1)
    print(f"grasps on {sel.name!r} ({sel.indices.size} Gaussians): {grasps.message} -> {args.out}")
    for i, g in enumerate(grasps.to_json()[:5]):
        print(
            f"  {i}: position {np.round(g['position'], 4).tolist()} approach "
            f"{np.round(grasps.rotations[i][:, 2], 3).tolist()} width {g['width']:.4f} "
            f"score {g['score']:.3f}"
        )
    if args.png:
        view = write_grasp_png(engine, sel, grasps, gripper, args.png, args.view, args.scale)
        print(f"  grippers drawn on view {view} -> {args.png}")
    return 0


#: Grippers drawn on ``--png`` (the best first).
MAX_DRAWN = 3


def best_view(cameras, corners: np.ndarray):
    """The camera that shows a gripper (its boxes' [B, 8, 3] corners) whole and most
    side-on: looking along the grasp's x axis puts the fingers and the approach in the image
    plane."""
    from gsbp_ros.overlay import project_points

    pts = corners.reshape(-1, 3)
    centre = pts.mean(axis=0)
    # The gripper's x axis: the palm's short side, i.e. the smallest spread of its points.
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    x_axis = vt[-1]
    best, best_score = None, -1.0
    for cam in cameras:
        uv, z = project_points(cam, pts)
        inside = (z > 0).all() and (uv >= 0).all() and (uv[:, 0] < cam.width).all()
        inside = inside and bool((uv[:, 1] < cam.height).all())
        look = centre - cam.center.double().numpy()
        score = abs(float(look @ x_axis)) / max(float(np.linalg.norm(look)), 1e-300)
        if inside and score > best_score:
            best, best_score = cam, score
    return best if best is not None else cameras[0]


def zoom_to(camera, points: np.ndarray, margin: float = 0.25):
    """The camera's view narrowed (same pose and size, longer focal length, shifted centre)
    so that ``points`` fill it up to ``margin`` of the frame."""
    from dataclasses import replace

    import torch

    from gsbp_ros.overlay import project_points

    uv, z = project_points(camera, points)
    uv = uv[z > 0]
    if uv.size == 0:
        return camera
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    span = np.maximum(hi - lo, 1.0)
    s = float(min(camera.width / span[0], camera.height / span[1]) / (1.0 + margin))
    if s <= 1.0:
        return camera
    k = camera.K.double().clone()
    mid = (lo + hi) / 2
    k[0, 0] *= s
    k[1, 1] *= s
    k[0, 2] = s * (k[0, 2] - mid[0]) + camera.width / 2
    k[1, 2] = s * (k[1, 2] - mid[1]) + camera.height / 2
    return replace(camera, K=k.to(torch.float32))


def write_grasp_png(
    engine, sel: Selection, grasps: GraspSet, gripper, path: str, view: str, scale: float
) -> str:
    """Render a view zoomed onto the region and the grippers, wash it out, tint the region
    and draw the best :data:`MAX_DRAWN` grippers (the best in green, on top)."""
    from gsbp_ros.cameras import pick_view
    from gsbp_ros.gripper import gripper_corners
    from gsbp_ros.overlay import (
        color_for,
        draw_grippers,
        overlay_mask,
        save_png,
        selection_pixels,
    )
    from gsbp_ros.raster import compute_view_weights, render_rgb

    if not engine.cameras:
        raise GsbpError("no view to draw the grasps on")
    poses = grasps.poses()[:MAX_DRAWN]
    corners = [gripper_corners(gripper, grasps.widths[i], p) for i, p in enumerate(poses)]
    if view != "auto":
        cam = pick_view(engine.cameras, view)
    elif corners:
        cam = best_view(engine.cameras, corners[0])
    else:
        cam = engine.cameras[0]
    if scale != 1.0:
        cam = cam.scaled(scale)
    region = engine.scene.means.cpu().numpy()[sel.indices]
    cam = zoom_to(cam, np.concatenate([region, *(c.reshape(-1, 3) for c in corners)]))
    w = compute_view_weights(engine.scene, cam)
    rgb = render_rgb(engine.scene, cam, weights=w, background=(1.0, 1.0, 1.0)).numpy()
    out = ((0.45 * rgb + 0.55) * 255 + 0.5).astype(np.uint8)
    mask = selection_pixels(w, sel.indices)
    full = (rgb * 255 + 0.5).astype(np.uint8)
    out[mask] = overlay_mask(full, mask, color=color_for(1), alpha=0.6)[mask]
    width = max(1, round(scale / 1.5))
    save_png(draw_grippers(out, cam, corners, line_width=width) if corners else out, path)
    return cam.name
