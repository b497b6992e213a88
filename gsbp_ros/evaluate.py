"""``gsbp eval``: accuracy on the demo scene, whose Gaussians carry ground-truth labels.

Text segmentation uses the label-map source (the paper's identity encoding): a prompt that
names an object selects it. Affordance transfer uses the lift-with-poses mode on the part
label maps. Both need no feature-model weights, so this runs anywhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError


def iou(selected: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two [N] boolean masks (1.0 when both are empty)."""
    union = np.logical_or(selected, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(selected, truth).sum() / union)


def evaluate_demo(args: argparse.Namespace) -> int:
    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.engine import EngineConfig, GsbpEngine
    from gsbp_ros.export import statistical_outlier_mask
    from gsbp_ros.images import read_label_image

    demo = Path(args.demo)
    names_file = demo / "names.json"
    if not names_file.is_file():
        raise GsbpError(f"{demo} is not a demo scene folder (no names.json); run gsbp demo-scene")
    names = json.loads(names_file.read_text())
    objects, parts = list(names["objects"]), list(names["parts"])
    obj_truth = np.load(demo / "labels.npy", allow_pickle=False)
    part_truth = np.load(demo / "part_labels.npy", allow_pickle=False)
    engine = GsbpEngine(
        EngineConfig(
            scene_path=str(demo / "scene.ply"),
            cameras_path=str(demo / "sparse" / "0"),
            feature_sources=["labels"],
            label_maps_dir=str(demo / "labels" / "objects"),
            label_names=objects,
            output_dir=str(demo),
        ),
        log=lambda m: None,
    )
    engine.start()
    engine.check_ready()
    rows = []
    means = engine.scene.means.numpy()
    for i, name in enumerate(objects):
        sel = engine.segment_text([name], [], 0.0)
        mask = np.zeros(engine.scene.num_gaussians, bool)
        mask[sel.indices] = True
        truth = obj_truth == i
        cleaned = mask.copy()
        if sel.indices.size > 20:
            keep = statistical_outlier_mask(means[sel.indices], nb_neighbors=20, std_ratio=2.0)
            cleaned[sel.indices[~keep]] = False
        rows.append(
            {
                "query": f"text {name!r}",
                "selected": int(mask.sum()),
                "truth": int(truth.sum()),
                "iou": round(iou(mask, truth), 4),
                "iou_after_outlier_removal": round(iou(cleaned, truth), 4),
            }
        )
    cams = {c.stem: c for c in load_cameras(demo / "sparse" / "0")}
    part_dir = demo / "labels" / "parts"
    stems = sorted(cams)[:: max(1, len(cams) // 6)]
    masks = [read_label_image(part_dir / f"{s}.png") for s in stems]
    result = engine.transfer_affordance([], masks, parts, 1, [cams[s] for s in stems])
    for i, name in enumerate(parts):
        rows.append(
            {
                "query": f"lifted part {name!r} ({len(stems)} views)",
                "selected": int((result.labels == i).sum()),
                "truth": int((part_truth == i).sum()),
                "iou": round(iou(result.labels == i, part_truth == i), 4),
                "iou_after_outlier_removal": "",
            }
        )
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.out:
        from gsbp_ros.fileio import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
