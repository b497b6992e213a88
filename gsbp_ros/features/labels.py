"""Label maps as features: per-view integer masks encoded as one-hot or contrastive codes.

A folder holds one ``<camera stem>.png`` (8-bit L/P, 16-bit I;16 or 32-bit I) or
``<camera stem>.npy`` (integer [H, W]) per view. Pixel value v > 0 is
``label_names[v - 1]``; 0 is unlabelled.

What an unlabelled pixel means is the caller's choice (``unlabelled``):

- ``"background"`` (default): it votes for an implicit *background* code of its own (one more
  channel), so a Gaussian takes a label only where that label outweighs everything else that
  was seen there: with one label map of one object, the table under the object's silhouette
  edges gets mostly unlabelled weight and stays background instead of joining the object.
- ``"ignore"``: it does not vote (its code is zero), for maps whose labels cover the scene
  and whose gaps mean "unknown", e.g. masks eroded at their boundaries or a segmenter's
  unassigned pixels; a Gaussian seen only by unlabelled pixels is then unlabelled.

Back-projecting the codes (expected mode) gives each Gaussian the weighted share of every
label and of the background; :meth:`LabelMapSource.decode` turns that into a label and a
confidence, and text queries use the background code as a negative (``background_code``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.features.base import FeatureSource
from gsbp_ros.features.encoding import train_identity_codes
from gsbp_ros.fileio import sha256_file
from gsbp_ros.images import read_label_image
from gsbp_ros.jsonio import read_json
from gsbp_ros.query import label_key, match_label

ENCODINGS = ("onehot", "contrastive")
#: What an unlabelled pixel (value 0) votes for.
UNLABELLED = ("background", "ignore")

#: Kept for callers of the old name; label images are read in one place.
read_label_map = read_label_image


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of [h, w] integers to [height, width], pixel-centre aligned.

    Output pixel i reads input pixel floor((i + 0.5) * h / height), the same mapping as
    ``interpolate(mode="nearest-exact")``, so labels are never blended.
    """
    h, w = labels.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def label_names_near(label_maps: str | Path) -> list[str]:
    """The label names of a label-map folder from a ``names.json`` beside or above it (as
    ``gsbp demo-scene`` writes: a list, or per-folder lists under the folder's name or
    "objects"); [] when there is none."""
    folder = Path(label_maps)
    for cand in (folder, folder.parent, folder.parent.parent):
        cand = cand / "names.json"
        if cand.is_file():
            names = read_json(cand, error=FeatureError, what="label names")
            if isinstance(names, dict):
                names = names.get(folder.name) or names.get("objects") or []
            if not isinstance(names, list):
                raise FeatureError(f"{cand}: expected a list of label names")
            return [str(n) for n in names]
    return []


class LabelMapSource(FeatureSource):
    """Per-view label maps as [H, W, D] codes at the camera's size.

    Args:
        folder: holds ``<camera stem>.png`` or ``<camera stem>.npy`` per view.
        label_names: L names; pixel value v > 0 means ``label_names[v - 1]``.
        encoding: ``"onehot"`` (D = L + 1, orthogonal: the paper's identity encoding plus
            the background channel) or ``"contrastive"`` (D < L + 1 learned codes, see
            :mod:`gsbp_ros.features.encoding`).
        dim: D for contrastive codes (default min(L + 1, 16)); must be None or L + 1 for
            one-hot.
        seed, steps: contrastive code training (deterministic for a seed).
        unlabelled: what pixel value 0 votes for: ``"background"`` or ``"ignore"`` (nothing);
            see the module docstring.

    Attributes:
        codes: [L, D] code of each label. background_code: [D] code of unlabelled pixels.
    """

    name = "labels"
    needs_rgb = False

    def __init__(
        self,
        folder: str | Path,
        label_names: Sequence[str],
        *,
        encoding: str = "onehot",
        dim: int | None = None,
        seed: int = 0,
        steps: int = 300,
        unlabelled: str = "background",
    ) -> None:
        if unlabelled not in UNLABELLED:
            raise FeatureError(
                f"unlabelled must be one of {', '.join(UNLABELLED)}, got {unlabelled!r}"
            )
        self.unlabelled = unlabelled
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise FeatureError(f"label map folder {self.folder} does not exist")
        if isinstance(label_names, str) or not label_names:
            raise FeatureError(
                "label_names must be a non-empty list of names, e.g. ['mug', 'table']"
            )
        names = [str(n).strip() for n in label_names]
        # Distinct as queries see them (case, "_" vs " "): two names one prompt cannot tell
        # apart would make one of the labels unqueryable.
        keys = [label_key(n) for n in names]
        if "" in keys or len(set(keys)) != len(keys):
            raise FeatureError(
                f"label names must be non-empty and distinct (ignoring case and '_'), got {names}"
            )
        self.label_names: list[str] = names
        num = len(names) + 1  # the labels, then the background
        if encoding not in ENCODINGS:
            raise FeatureError(f"unknown label encoding {encoding!r}; use one of {ENCODINGS}")
        self.encoding = encoding
        self.seed, self.steps = int(seed), int(steps)
        if encoding == "onehot":
            if dim not in (None, num):
                raise FeatureError(
                    f"one-hot codes for {num - 1} labels and the background have dim {num}, "
                    f"not {dim}"
                )
            all_codes = torch.eye(num)
            self.decoder = None
        else:
            dim = min(num, 16) if dim is None else int(dim)
            all_codes, self.decoder = train_identity_codes(
                num, dim, steps=self.steps, seed=self.seed
            )
        self.codes = all_codes[:-1].clone()
        self.background_code = all_codes[-1].clone()
        self.dim = int(all_codes.shape[1])
        # Row 0 is "unlabelled": the background code, or no vote at all.
        row0 = self.background_code if unlabelled == "background" else torch.zeros(self.dim)
        self._table = torch.cat([row0[None], self.codes])
        self._maps_hash: str | None = None

    def map_path(self, camera: Camera) -> Path | None:
        """The label map file of a view, or None when the folder has none."""
        found = [
            p
            for p in (self.folder / f"{camera.stem}.png", self.folder / f"{camera.stem}.npy")
            if p.is_file()
        ]
        if len(found) > 1:
            raise FeatureError(
                f"both {found[0].name} and {found[1].name} exist in {self.folder}; keep one"
            )
        return found[0] if found else None

    def read_labels(self, camera: Camera) -> Tensor | None:
        """[H, W] int64 label ids (0 = unlabelled) at the camera's size, or None."""
        path = self.map_path(camera)
        if path is None:
            return None
        labels = read_label_map(path)
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi > len(self.label_names):
                bad = lo if lo < 0 else hi
                raise FeatureError(
                    f"label map {path} holds value {bad}, but only 0 (unlabelled) and "
                    f"1..{len(self.label_names)} ({len(self.label_names)} label names) are valid"
                )
        if labels.shape != (camera.height, camera.width):
            # Resize ids, never codes: a blended id or code would mean a different label.
            labels = resize_nearest(labels, camera.height, camera.width)
        return torch.from_numpy(labels)

    def view_features(self, camera: Camera, rgb: Tensor | None = None) -> Tensor | None:
        """[H, W, D] float32 codes at the camera's size (0 = unlabelled), or None if no map."""
        labels = self.read_labels(camera)
        return None if labels is None else self._table[labels]

    def decode(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Labels and confidences from back-projected codes.

        Args:
            features: [N, D] (expected or accumulated mode).

        Returns:
            labels: [N] int64 in -1..L-1; -1 where the background (unlabelled pixels)
                outweighs every label, ties included, and where nothing was seen (with
                ``unlabelled="ignore"``: where no labelled pixel saw the Gaussian).
            confidence: [N] float32 in 0..1: one-hot, the winner's share of the weight;
                contrastive, the decoder's softmax probability. 0 where nothing was seen.
        """
        f = features.detach().float().cpu()
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise FeatureError(f"label features must be [N, {self.dim}], got {list(f.shape)}")
        if self.decoder is None:
            scores = f.clamp_min(0)
            total = scores.sum(dim=1)
            seen = total > 0
        else:
            norm = f.norm(dim=1)
            scores = torch.softmax(self.decoder(f / norm.clamp_min(1e-30)[:, None]), dim=1)
            total = torch.ones_like(norm)
            seen = norm > 0
        # Background (the last code) first: max returns the first maximum, so it wins ties.
        best, arg = torch.cat([scores[:, -1:], scores[:, :-1]], dim=1).max(dim=1)
        conf = best / total.clamp_min(1e-30)
        labels = torch.where(seen, arg - 1, torch.full_like(arg, -1))
        return labels, torch.where(seen, conf, torch.zeros_like(conf))

    def text_query(self, name: str) -> Tensor:
        """The code [D] of a label, matched like every label prompt (case-insensitive, ``_``
        same as a space; see :func:`gsbp_ros.query.match_label`)."""
        return self.codes[match_label(self.label_names, str(name))].clone()

    def cache_key(self) -> dict[str, str]:
        if self._maps_hash is None:  # label maps are small; hash their content once
            h = hashlib.sha256()
            for p in sorted(self.folder.glob("*")):
                if p.suffix.lower() in (".png", ".npy") and p.is_file():
                    h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
            self._maps_hash = h.hexdigest()
        key = {
            "source": self.name,
            "maps_sha256": self._maps_hash,
            "labels": hashlib.sha256("\n".join(self.label_names).encode()).hexdigest(),
            "encoding": self.encoding,
            "dim": str(self.dim),
            "background": "implicit" if self.unlabelled == "background" else "ignored",
        }
        if self.encoding == "contrastive":
            key.update(seed=str(self.seed), steps=str(self.steps))
        return key
