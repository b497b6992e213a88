"""Scenes with ground truth: splats, cameras, per-view label maps and a label per Gaussian.

:func:`load_labelled_scene` reads any such scene; :func:`load_demo` reads the folder that
``gsbp demo-scene`` writes. Both check what evaluation relies on and fail with one line:
ground truth of another length than the scene, label values without a name, no label maps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsbp_ros.camera import Camera
from gsbp_ros.errors import GsbpError
from gsbp_ros.scene import GaussianScene


@dataclass
class LabelledScene:
    """Everything an accuracy or robustness run needs.

    Attributes:
        scene: N Gaussians.
        cameras: every view, in file order.
        label_maps: camera stem -> [H, W] int64 label ids (0 = unlabelled, v = names[v - 1]);
            views without a map are absent.
        names: L label names.
        truth: [N] int64 ground-truth label index per Gaussian (0..L-1, -1 = none).
        description: where it came from, for reports.
    """

    scene: GaussianScene
    cameras: list[Camera]
    label_maps: dict[str, np.ndarray]
    names: list[str]
    truth: np.ndarray
    description: str = ""

    def split(self, holdout: int) -> tuple[list[Camera], list[Camera]]:
        """(input views, held-out views): every ``holdout``-th view (0, k, 2k, ...) is held
        out for 2D evaluation, the 3DGS/LLFF convention; ``holdout = 0`` holds out none."""
        if holdout < 0 or holdout == 1:
            raise GsbpError(f"holdout must be 0 (none) or at least 2, got {holdout}")
        if holdout == 0:
            return list(self.cameras), []
        test = [c for i, c in enumerate(self.cameras) if i % holdout == 0]
        train = [c for i, c in enumerate(self.cameras) if i % holdout != 0]
        return train, [c for c in test if c.stem in self.label_maps]


def read_label_maps(
    folder: str | Path, cameras: Sequence[Camera], num_labels: int
) -> dict[str, np.ndarray]:
    """Label maps of the given views: ``<stem>.png`` or ``<stem>.npy`` in ``folder``.

    Raises:
        GsbpError: no map for any view, or a map holds a value outside 0..num_labels.
    """
    from gsbp_ros.images import read_label_image

    folder = Path(folder)
    if not folder.is_dir():
        raise GsbpError(f"label map folder {folder} does not exist")
    maps: dict[str, np.ndarray] = {}
    for cam in cameras:
        for suffix in (".png", ".npy"):
            path = folder / f"{cam.stem}{suffix}"
            if path.is_file():
                labels = read_label_image(path)
                bad = labels[(labels < 0) | (labels > num_labels)]
                if bad.size:
                    raise GsbpError(
                        f"label map {path} holds value {int(bad[0])}, but only 0 (unlabelled) "
                        f"and 1..{num_labels} ({num_labels} label names) are valid"
                    )
                maps[cam.stem] = labels
                break
    if not maps:
        raise GsbpError(f"{folder} holds no label map (<image stem>.png|.npy) of any view")
    return maps


def read_truth(path: str | Path, num_gaussians: int, num_labels: int) -> np.ndarray:
    """[N] int64 per-Gaussian labels from a ``.npy`` file, checked against the scene."""
    path = Path(path)
    try:
        truth = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise GsbpError(f"cannot read ground truth {path}: {exc}") from exc
    if truth.ndim != 1 or truth.dtype.kind not in "iu":
        raise GsbpError(
            f"ground truth {path} must be a 1-D integer array, got {truth.dtype} "
            f"{list(truth.shape)}"
        )
    if truth.shape[0] != num_gaussians:
        raise GsbpError(
            f"ground truth {path} has {truth.shape[0]} entries but the scene has "
            f"{num_gaussians} Gaussians"
        )
    truth = truth.astype(np.int64)
    bad = truth[(truth < -1) | (truth >= num_labels)]
    if bad.size:
        raise GsbpError(
            f"ground truth {path} holds label {int(bad[0])}; valid are 0..{num_labels - 1} "
            f"(index into the {num_labels} names) and -1 (none)"
        )
    return truth


def load_labelled_scene(
    scene_path: str | Path,
    cameras_path: str | Path,
    label_maps: str | Path,
    names: Sequence[str],
    truth_path: str | Path,
) -> LabelledScene:
    """Read a scene with per-view label maps and per-Gaussian ground truth."""
    from gsbp_ros.cameras import load_cameras

    names = [str(n) for n in names]
    if not names:
        raise GsbpError("no label names: give --label-names or a names.json")
    scene = GaussianScene.load(scene_path)
    cameras = load_cameras(cameras_path)
    maps = read_label_maps(label_maps, cameras, len(names))
    truth = read_truth(truth_path, scene.num_gaussians, len(names))
    return LabelledScene(scene, cameras, maps, names, truth, description=str(scene_path))


def load_demo(folder: str | Path, *, level: str = "objects") -> LabelledScene:
    """The demo scene written by ``gsbp demo-scene`` (``level``: "objects" or "parts")."""
    folder = Path(folder)
    names_file = folder / "names.json"
    if not names_file.is_file():
        raise GsbpError(f"{folder} is not a demo scene folder (no names.json); run gsbp demo-scene")
    names = json.loads(names_file.read_text())[level]
    truth = "labels.npy" if level == "objects" else "part_labels.npy"
    data = load_labelled_scene(
        folder / "scene.ply",
        folder / "sparse" / "0",
        folder / "labels" / level,
        names,
        folder / truth,
    )
    data.description = f"demo scene {folder} ({level})"
    return data
