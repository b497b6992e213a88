"""Capture folders as users bring them: which scene file, cameras and photos to use.

``find_capture(scene_path, cameras_path, images_dir)`` resolves what the node parameters /
CLI flags point at into files, and says in plain lines what it picked:

Scene (``scene_path`` is a file or a folder)
    - a file: ``.ply`` (Inria format), ``.splat`` (antimatter15) or a gsplat checkpoint;
    - an Inria 3DGS output folder: ``point_cloud/iteration_<N>/point_cloud.ply`` with the
      highest N (a deterministic choice, logged with the others);
    - any other folder: its one splat file (a ``.ply`` with 3DGS properties, a ``.splat``, a
      ``.pt``/``.pth``/``.ckpt``). Sparse point clouds (``input.ply``, ``sparse_pc.ply``) are
      not splats and are skipped; several splat files are an error naming them.

Cameras (``cameras_path``: a file or folder as :func:`gsbp_ros.cameras.load_cameras` takes,
``"orbit"`` for generated views, or empty to look next to the scene)
    Next to the scene means the scene's folder, then (for ``point_cloud/iteration_N/...``)
    the Inria output folder: a COLMAP model (there, in ``sparse/0`` or ``sparse``), a
    ``transforms.json``, a ``transforms_train.json`` or a ``cameras.json``. Several of them
    in one folder are an error naming them; none means generated orbit views.

Frames
    A ``dataparser_transforms.json`` next to the scene marks a nerfstudio splatfacto export,
    whose splats live in nerfstudio's normalised frame: the cameras are moved into it (see
    :mod:`gsbp_ros.cameras_nerf`; COLMAP and Inria cameras count as the original frame).

Photos (``images_dir``: a folder, ``"none"`` for renders only, or empty to look for them)
    COLMAP: ``images/`` beside the ``sparse/`` folder. nerfstudio / Blender: the JSON's
    folder (frame paths are relative to it). Inria: ``<source_path>/<images>`` from the
    output's ``cfg_args``, else ``images/`` beside ``cameras.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsbp_ros.camera import Camera
from gsbp_ros.cameras import FORMAT_NAMES, CameraFile, CameraSet, find_camera_file, read_cameras
from gsbp_ros.errors import CameraError, SceneError
from gsbp_ros.scene import GaussianScene
from gsbp_ros.scene_io import CKPT_SUFFIXES, SCENE_SUFFIXES, SPLAT_SUFFIXES, is_splat_ply

ORBIT = "orbit"
NO_PHOTOS = "none"
DATAPARSER_FILE = "dataparser_transforms.json"
_ITERATION = re.compile(r"iteration_(\d+)")


@dataclass
class Capture:
    """What a scene path (and optional cameras path and images folder) resolved to.

    Attributes:
        scene_file: the splat file to load.
        scene_note: how it was chosen (e.g. "highest of iterations 7000, 30000"), or "".
        cameras_path: file or folder to read cameras from; None: generated orbit views.
        cameras_note: "given", "found next to the scene" or why there are none.
        dataparser: a nerfstudio ``dataparser_transforms.json`` that moves the cameras into
            the scene's frame, or None.
        images_dir: where photos are looked for; None: renders only.
        images_note: "given", how it was found, or why there is none.
        roots: folders that count as "next to the scene", nearest first.
    """

    scene_file: Path
    scene_note: str = ""
    cameras_path: Path | None = None
    cameras_note: str = ""
    dataparser: Path | None = None
    images_dir: Path | None = None
    images_note: str = ""
    images_given: bool = False
    roots: list[Path] = field(default_factory=list)
    camera_set: CameraSet | None = None

    # -- loading -------------------------------------------------------------------------------
    def load_scene(self) -> GaussianScene:
        return GaussianScene.load(self.scene_file)

    def load_cameras(self) -> list[Camera] | None:
        """The cameras in the scene's frame, sorted by name; None for generated views."""
        if self.cameras_path is None:
            return None
        self.camera_set = read_cameras(self.cameras_path)
        cams = self.camera_set.cameras
        transform = self.camera_transform()
        if transform is not None:
            from gsbp_ros.cameras import transform_cameras

            cams = transform_cameras(cams, transform)
        if self.images_dir is None and not self.images_given:
            self.images_dir, self.images_note = _find_images(self)
        return cams

    def camera_transform(self) -> np.ndarray | None:
        """[4, 4] similarity that moves the loaded cameras into the scene's frame, or None."""
        if self.dataparser is None or self.camera_set is None:
            return None
        from gsbp_ros.cameras_nerf import dataparser_camera_transform

        return dataparser_camera_transform(self.dataparser, self.camera_set.transforms)

    # -- reporting -----------------------------------------------------------------------------
    def describe(self, *, photos: bool = True) -> list[str]:
        """What was picked, one line per input (for the node log and the CLI); the photos
        line only with ``photos`` (it means nothing without an image model)."""
        kind = _scene_kind(self.scene_file)
        lines = [
            f"scene: {self.scene_file} ({kind}{'; ' + self.scene_note if self.scene_note else ''})"
        ]
        if self.cameras_path is None:
            lines.append(f"cameras: generated orbit views ({self.cameras_note})")
        else:
            what = ""
            if self.camera_set is not None:
                fmt = FORMAT_NAMES[self.camera_set.source.format]
                what = f"{fmt}, {len(self.camera_set.cameras)} views; "
                if self.camera_set.source.path != self.cameras_path:
                    what += f"{self.camera_set.source.path}; "
            lines.append(f"cameras: {self.cameras_path} ({what}{self.cameras_note})")
        if self.dataparser is not None:
            lines.append(
                f"camera frame: {self.dataparser} (nerfstudio dataparser transform: cameras "
                "moved into the splatfacto export's normalised frame)"
            )
        if not photos:
            return lines
        if self.images_dir is None:
            lines.append(f"photos: none ({self.images_note or 'features from renders'})")
        else:
            lines.append(f"photos: {self.images_dir} ({self.images_note})")
        return lines


def find_capture(scene_path: str | Path, cameras_path: str = "", images_dir: str = "") -> Capture:
    """Resolve the scene file, the cameras and the photos folder (nothing is loaded yet).

    Raises SceneError / CameraError with one line naming the path and what is wrong.
    """
    text = str(scene_path).strip()
    if not text:
        raise SceneError("no scene given (scene_path / --scene is empty)")
    path = Path(text).expanduser()
    if not path.exists():
        raise SceneError(f"{path}: scene file or folder not found")
    if path.is_dir():
        scene_file, note = _scene_in_folder(path)
        roots = [path]
    else:
        scene_file, note = path, ""
        roots = [path.parent]
    inria_root = _inria_root(scene_file)
    if inria_root is not None and inria_root not in roots:
        roots.append(inria_root)
    cap = Capture(scene_file=scene_file, scene_note=note, roots=roots)
    _resolve_cameras(cap, cameras_path.strip())
    dataparser = [r / DATAPARSER_FILE for r in roots if (r / DATAPARSER_FILE).is_file()]
    if dataparser and cap.cameras_path is not None:
        cap.dataparser = dataparser[0]
    images = images_dir.strip()
    if images.lower() == NO_PHOTOS:
        cap.images_note = f"images_dir is {NO_PHOTOS!r}: features from renders"
        cap.images_given = True
    elif images:
        folder = Path(images).expanduser()
        if not folder.is_dir():
            raise CameraError(f"{folder}: images folder not found (images_dir / --images)")
        cap.images_dir, cap.images_note, cap.images_given = folder, "given", True
    return cap


# ---------------------------------------------------------------------------------------------
# scene


def _scene_in_folder(folder: Path) -> tuple[Path, str]:
    iterations = []
    pc = folder / "point_cloud"
    if pc.is_dir():
        for d in pc.iterdir():
            m = _ITERATION.fullmatch(d.name)
            if m and (d / "point_cloud.ply").is_file():
                iterations.append((int(m.group(1)), d / "point_cloud.ply"))
    if iterations:
        iterations.sort()
        if len(iterations) == 1:
            return iterations[0][1], f"Inria output, iteration {iterations[0][0]}"
        others = ", ".join(str(n) for n, _ in iterations)
        return iterations[-1][1], f"Inria output: highest of iterations {others}"
    candidates = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        suffix = p.suffix.lower()
        if suffix in SPLAT_SUFFIXES + CKPT_SUFFIXES or (suffix == ".ply" and is_splat_ply(p)):
            candidates.append(p)
    if not candidates:
        raise SceneError(
            f"{folder}: no scene in this folder (no point_cloud/iteration_<N>/point_cloud.ply, "
            f"no .ply with 3DGS properties, no {', '.join(SCENE_SUFFIXES[1:])} file)"
        )
    if len(candidates) > 1:
        raise SceneError(
            f"{folder}: several scene files ({', '.join(p.name for p in candidates)}); "
            "pass the one to use as the scene path"
        )
    return candidates[0], ""


def _inria_root(scene_file: Path) -> Path | None:
    """The output folder of ``<root>/point_cloud/iteration_<N>/point_cloud.ply``, else None."""
    it = scene_file.parent
    if _ITERATION.fullmatch(it.name) and it.parent.name == "point_cloud":
        return it.parent.parent
    return None


def _scene_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in SPLAT_SUFFIXES:
        return "antimatter15 .splat"
    if suffix in CKPT_SUFFIXES:
        return "gsplat checkpoint"
    return "Inria-format .ply"


# ---------------------------------------------------------------------------------------------
# cameras and photos


def _resolve_cameras(cap: Capture, cameras_path: str) -> None:
    if cameras_path.lower() == ORBIT:
        cap.cameras_note = f"cameras_path is {ORBIT!r}"
        return
    if cameras_path:
        path = Path(cameras_path).expanduser()
        if not path.exists():
            raise CameraError(f"{path}: camera file or folder not found")
        cap.cameras_path, cap.cameras_note = path, "given"
        return
    for root in cap.roots:
        found: CameraFile | None = find_camera_file(root)
        if found is not None:
            cap.cameras_path = found.path
            cap.cameras_note = "found next to the scene"
            return
    cap.cameras_note = "no camera file next to the scene"


def _find_images(cap: Capture) -> tuple[Path | None, str]:
    """Photos folder for automatically found or given cameras, by their format."""
    src = cap.camera_set.source if cap.camera_set is not None else None
    if src is None:
        return None, "no cameras"
    if src.format == "colmap":
        model = src.path
        if model.parent.name == "sparse":
            base = model.parent.parent  # <root>/sparse/0
        elif model.name == "sparse":
            base = model.parent  # <root>/sparse
        else:
            base = model  # cameras.txt/images.txt beside the images folder
        if (base / "images").is_dir():
            return base / "images", "images/ beside the COLMAP model's sparse/ folder"
        return None, f"no {base / 'images'} folder: features from renders"
    if src.format in ("nerfstudio", "blender"):
        return src.path.parent, f"frame paths of {src.path.name}"
    # Inria: the training images are where cfg_args says (source_path/images)
    root = src.path.parent
    cfg = root / "cfg_args"
    if cfg.is_file():
        try:
            text = cfg.read_text(errors="replace")[:100_000]
        except OSError:
            text = ""
        source = re.search(r"source_path='([^']*)'", text)
        images = re.search(r"\bimages='([^']*)'", text)
        if source:
            src_dir = Path(source.group(1))
            src_dir = src_dir if src_dir.is_absolute() else root / src_dir
            cand = src_dir / (images.group(1) if images else "images")
            if cand.is_dir():
                return cand, f"source_path and images of {cfg}"
    if (root / "images").is_dir():
        return root / "images", "images/ beside cameras.json"
    return None, "no training images found (cfg_args source_path, images/): features from renders"
