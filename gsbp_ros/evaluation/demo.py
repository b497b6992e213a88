"""Accuracy on the demo scene, whose Gaussians carry ground-truth labels (``gsbp eval --demo``).

Text segmentation uses the label-map source (the paper's identity encoding): a prompt that
names an object selects it. Affordance transfer uses the lift-with-poses mode on the part
label maps. Both need no feature-model weights, so this runs anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gsbp_ros.errors import GsbpError
from gsbp_ros.evaluation.metrics import iou


def demo_rows(folder: str | Path, *, device: str = "auto", engine: str = "auto") -> list[dict]:
    """One row per query: text prompt per object, lifted part labels; IoU against the truth.

    Runs the engine as the node does (all views, expected mode).
    """
    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.engine import EngineConfig, GsbpEngine
    from gsbp_ros.export import statistical_outlier_mask
    from gsbp_ros.images import read_label_image

    demo = Path(folder)
    names_file = demo / "names.json"
    if not names_file.is_file():
        raise GsbpError(f"{demo} is not a demo scene folder (no names.json); run gsbp demo-scene")
    names = json.loads(names_file.read_text())
    objects, parts = list(names["objects"]), list(names["parts"])
    obj_truth = np.load(demo / "labels.npy", allow_pickle=False)
    part_truth = np.load(demo / "part_labels.npy", allow_pickle=False)
    gsbp = GsbpEngine(
        EngineConfig(
            scene_path=str(demo / "scene.ply"),
            cameras_path=str(demo / "sparse" / "0"),
            feature_sources=["labels"],
            label_maps_dir=str(demo / "labels" / "objects"),
            label_names=objects,
            output_dir=str(demo),
            device=device,
            engine=engine,
        ),
        log=lambda m: None,
    )
    gsbp.start()
    gsbp.check_ready()
    n = gsbp.scene.num_gaussians
    for what, truth in (("labels.npy", obj_truth), ("part_labels.npy", part_truth)):
        if truth.shape != (n,):
            raise GsbpError(
                f"ground truth {demo / what} has {truth.shape[0]} entries but the scene has "
                f"{n} Gaussians"
            )
    rows = []
    means = gsbp.scene.means.cpu().numpy()
    for i, name in enumerate(objects):
        sel = gsbp.segment_text([name], [], 0.0)
        mask = np.zeros(n, bool)
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
    result = gsbp.transfer_affordance([], masks, parts, 1, [cams[s] for s in stems])
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
    return rows


def rows_markdown(rows: list[dict]) -> list[str]:
    """The rows as a markdown table."""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return out
