"""Protocol for public benchmarks whose test images come with one binary mask per prompt:
the paper's 2D mIoU (Eq. 7 masks of rendered features) per scene.

The data is not shipped: bring the scenes (images, COLMAP model, masks) and a splat trained
on each. Two layouts are read, as their own evaluation scripts read them:

LERF-Mask (Gaussian Grouping, ``docs/dataset.md``; ``script/eval_lerf_mask.py``)::

    <scene>/sparse/0/                 COLMAP model of every image
    <scene>/images_train/             the training images (the rest are test views)
    <scene>/test_mask/<view>/<prompt>.png   GT mask (> 128 is inside) per test view and prompt

  ``<view>`` is the index of the test view among the test images sorted by name (``0``,
  ``1``, ...), or an image stem.

3D-OVS (as the paper's evaluation code reads it)::

    <scene>/sparse/0/
    <scene>/segmentations/classes.txt       one class name per line
    <scene>/segmentations/<image stem>/<class>.png   GT mask (> 0 is inside)

The splat of a scene is ``--scene-file`` (relative to the scene folder) or the first of
``scene.ply``, ``point_cloud.ply``, ``point_cloud/iteration_<largest>/point_cloud.ply``,
``ckpts/ckpt_<largest>*.pt``.

Protocol: features are back-projected from the training views (LERF-Mask: the images in
``images_train``, test views never; 3D-OVS: every view, as the paper's code does); each
prompt's 2D mask in a test view is rendered with :meth:`GsbpEngine.text_mask_2d` (LERF-Mask:
the engine's default negatives; 3D-OVS: every other class is a negative, i.e. the arg-max
over classes the paper's code uses) at the GT mask's resolution, its IoU with the GT mask
taken, averaged per prompt over views and then over prompts (Gaussian Grouping's mIoU).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError
from gsbp_ros.evaluation.metrics import class_mean_iou, iou

SPLAT_NAMES = ("scene.ply", "point_cloud.ply")


@dataclass
class MaskTask:
    """One GT mask: the view it belongs to, the prompt it answers, the file."""

    view: str  # camera stem
    prompt: str
    path: Path


@dataclass
class BenchmarkScene:
    """A scene folder in one of the supported layouts."""

    name: str
    folder: Path
    layout: str  # "lerf-mask" | "3d-ovs"
    splats: Path
    train: list[str]  # camera stems to back-project from
    tasks: list[MaskTask]
    classes: list[str] = field(default_factory=list)  # 3D-OVS: every class of the scene


@dataclass
class SceneResult:
    scene: str
    layout: str
    miou: float
    per_prompt: dict[str, float]
    scores: list[tuple[str, str, float]]  # (view, prompt, IoU)
    train_views: int
    test_views: int
    seconds: float


def detect_layout(folder: Path) -> str | None:
    if (folder / "test_mask").is_dir():
        return "lerf-mask"
    if (folder / "segmentations" / "classes.txt").is_file():
        return "3d-ovs"
    return None


def find_scenes(root: str | Path, *, scene_file: str = "") -> list[BenchmarkScene]:
    """The benchmark scenes in ``root`` (itself a scene folder, or a folder of them)."""
    root = Path(root)
    if not root.is_dir():
        raise GsbpError(f"benchmark folder {root} does not exist")
    folders = [root] if detect_layout(root) else sorted(p for p in root.iterdir() if p.is_dir())
    scenes = [read_scene(f, scene_file=scene_file) for f in folders if detect_layout(f)]
    if not scenes:
        raise GsbpError(
            f"{root} holds no LERF-Mask scene (test_mask/) or 3D-OVS scene "
            "(segmentations/classes.txt); see docs/quality.md for the layouts"
        )
    return scenes


def _largest(paths: Sequence[Path], pattern: str) -> Path | None:
    def key(p: Path) -> int:
        m = re.search(pattern, p.as_posix())
        return int(m.group(1)) if m else -1

    paths = [p for p in paths if key(p) >= 0]
    return max(paths, key=key) if paths else None


def find_splats(folder: Path, scene_file: str = "") -> Path:
    """The trained splat of a scene folder (see the module docstring for the search order)."""
    if scene_file:
        path = folder / scene_file
        if not path.is_file():
            raise GsbpError(f"scene {folder.name}: --scene-file {scene_file} not found in it")
        return path
    for name in SPLAT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = _largest(
        list(folder.glob("point_cloud/iteration_*/point_cloud.ply")), r"iteration_(\d+)/"
    ) or _largest(list(folder.glob("ckpts/ckpt_*.pt")), r"ckpt_(\d+)")
    if found is None:
        raise GsbpError(
            f"scene {folder.name}: no trained splat found (scene.ply, point_cloud.ply, "
            "point_cloud/iteration_*/point_cloud.ply, ckpts/ckpt_*.pt); train one on the "
            "scene's images or pass --scene-file"
        )
    return found


def read_scene(folder: Path, *, scene_file: str = "") -> BenchmarkScene:
    """Read one scene folder's layout, views and GT masks (the splat is only located)."""
    from gsbp_ros.cameras import load_cameras

    layout = detect_layout(folder)
    cameras = load_cameras(folder)
    stems = sorted(c.stem for c in cameras)
    splats = find_splats(folder, scene_file)
    if layout == "lerf-mask":
        train_dir = folder / "images_train"
        train_names = (
            {p.stem for p in train_dir.iterdir() if p.is_file()} if train_dir.is_dir() else None
        )
        test = [s for s in stems if train_names is not None and s not in train_names]
        tasks = []
        for view_dir in sorted(p for p in (folder / "test_mask").iterdir() if p.is_dir()):
            if view_dir.name in stems:
                view = view_dir.name
            elif view_dir.name.isdigit() and int(view_dir.name) < len(test):
                view = test[int(view_dir.name)]
            else:
                raise GsbpError(
                    f"scene {folder.name}: test_mask/{view_dir.name} names no image and is not "
                    f"an index into the {len(test)} test views (images not in images_train/)"
                )
            tasks += [MaskTask(view, m.stem, m) for m in sorted(view_dir.glob("*.png"))]
        test_views = {t.view for t in tasks}
        train = (
            sorted(train_names & set(stems))
            if train_names
            else [s for s in stems if s not in test_views]
        )
        classes: list[str] = []
    else:
        seg = folder / "segmentations"
        classes = [
            ln.strip() for ln in (seg / "classes.txt").read_text().splitlines() if ln.strip()
        ]
        if not classes:
            raise GsbpError(f"scene {folder.name}: segmentations/classes.txt lists no class")
        tasks = []
        for view_dir in sorted(p for p in seg.iterdir() if p.is_dir()):
            if view_dir.name not in stems:
                raise GsbpError(
                    f"scene {folder.name}: segmentations/{view_dir.name} names no image of "
                    "the COLMAP model"
                )
            for c in classes:
                if (view_dir / f"{c}.png").is_file():
                    tasks.append(MaskTask(view_dir.name, c, view_dir / f"{c}.png"))
        train = stems
    if not tasks:
        raise GsbpError(f"scene {folder.name}: no GT mask found ({layout} layout)")
    if not train:
        raise GsbpError(f"scene {folder.name}: no training view left to back-project from")
    return BenchmarkScene(folder.name, folder, layout, splats, train, tasks, classes)


def read_gt_mask(path: Path, layout: str) -> np.ndarray:
    """[H, W] bool: > 128 inside for LERF-Mask (its eval script), > 0 for 3D-OVS."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise GsbpError(f"cannot read GT mask {path}: {exc}") from exc
    return grey > (128 if layout == "lerf-mask" else 0)


@dataclass
class EngineOptions:
    """How features are built for a benchmark run (the engine's own options)."""

    sources: list[str] = field(default_factory=lambda: ["clip"])
    clip_model: str = "openai/clip-vit-base-patch16"
    dinov2_model: str = "facebook/dinov2-small"
    label_maps: str = ""  # relative to each scene folder
    label_names: list[str] = field(default_factory=list)
    threshold: float = 0.0
    device: str = "auto"
    engine: str = "auto"
    render_scale: float = 1.0


def evaluate_scene(
    bench: BenchmarkScene,
    options: EngineOptions,
    *,
    log: Callable[[str], None] = lambda m: None,
) -> SceneResult:
    """2D IoU of every GT mask of one scene; its mIoU."""
    from gsbp_ros.cameras import load_cameras, save_colmap_text
    from gsbp_ros.engine import EngineConfig, GsbpEngine

    t0 = time.monotonic()
    cameras = {c.stem: c for c in load_cameras(bench.folder)}
    with tempfile.TemporaryDirectory(prefix="gsbp-bench-") as tmp:
        # The engine back-projects from every camera of its model: give it the training ones.
        save_colmap_text([cameras[s] for s in bench.train], Path(tmp) / "sparse" / "0")
        names = list(options.label_names)
        if "labels" in options.sources and not names:
            names = _scene_label_names(bench.folder, options.label_maps)
        engine = GsbpEngine(
            EngineConfig(
                scene_path=str(bench.splats),
                cameras_path=str(Path(tmp) / "sparse" / "0"),
                feature_sources=list(options.sources),
                clip_model=options.clip_model,
                dinov2_model=options.dinov2_model,
                label_maps_dir=str(bench.folder / options.label_maps) if options.label_maps else "",
                label_names=names,
                device=options.device,
                engine=options.engine,
                render_scale=options.render_scale,
                output_dir=tmp,
            ),
            log=log,
        )
        engine.start()
        engine.check_ready()
    scores = []
    for task in bench.tasks:
        gt = read_gt_mask(task.path, bench.layout)
        cam = cameras[task.view]
        view = cam.scaled(gt.shape[1] / cam.width) if gt.shape[1] != cam.width else cam
        negative = [c for c in bench.classes if c != task.prompt] if bench.classes else []
        pred, _ = engine.text_mask_2d([task.prompt], negative, options.threshold, view)
        if pred.shape != gt.shape:
            from gsbp_ros.features.labels import resize_nearest

            pred = resize_nearest(pred.astype(np.int64), *gt.shape).astype(bool)
        scores.append((task.view, task.prompt, iou(pred, gt)))
    miou, per_prompt = class_mean_iou((p, v) for _, p, v in scores)
    return SceneResult(
        bench.name,
        bench.layout,
        miou,
        per_prompt,
        scores,
        len(bench.train),
        len({t.view for t in bench.tasks}),
        time.monotonic() - t0,
    )


def _scene_label_names(folder: Path, label_maps: str) -> list[str]:
    import json

    for cand in (folder / label_maps / "names.json", folder / "names.json"):
        if cand.is_file():
            names = json.loads(cand.read_text())
            if isinstance(names, dict):
                names = names.get(Path(label_maps).name) or names.get("objects") or []
            return [str(n) for n in names]
    raise GsbpError(
        f"scene {folder.name}: the labels source needs label names: --label-names or a "
        "names.json in the scene or label map folder"
    )


def report(results: Sequence[SceneResult]) -> list[str]:
    """Markdown: one summary table, then one per-prompt table per scene."""
    out = [
        "| scene | layout | training views | test views | prompts | mIoU | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r.scene} | {r.layout} | {r.train_views} | {r.test_views} | "
            f"{len(r.per_prompt)} | {r.miou:.3f} | {r.seconds:.1f} s |"
        )
    if results:
        out.append(f"| mean | | | | | {float(np.mean([r.miou for r in results])):.3f} | |")
    for r in results:
        out += ["", f"**{r.scene}** ({r.layout})", "", "| prompt | views | IoU |", "|---|---|---|"]
        for prompt, value in sorted(r.per_prompt.items()):
            views = sum(1 for _, p, _ in r.scores if p == prompt)
            out.append(f"| {prompt} | {views} | {value:.3f} |")
    return [*out, ""]
