"""The FeatureSource interface and image helpers shared by every 2D feature source.

A source turns one view (its camera and, if it needs one, the RGB render) into a feature
map ``[H', W', C]`` at any resolution; back-projection resizes it to the view bilinearly
(see ``ViewWeights.backproject``). Sources are created by name with
:func:`gsbp_ros.features.make_source`.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.fileio import sha256_file


class FeatureSource(abc.ABC):
    """One kind of 2D feature, computed per view.

    Attributes:
        name: registry name ("dinov2", "clip", "labels").
        dim: channels C of every map this source returns.
        needs_rgb: True when :meth:`view_features` needs the RGB render of the view.
    """

    name: str
    dim: int
    needs_rgb: bool

    @abc.abstractmethod
    def cache_key(self) -> dict[str, str]:
        """Everything that changes the features: model id, revision or file hash, options.

        Back-projected fields are cached under this key, so two sources with equal keys
        must produce equal features for equal inputs.
        """

    @abc.abstractmethod
    def view_features(self, camera: Camera, rgb: Tensor | None) -> Tensor | None:
        """Features of one view.

        Args:
            camera: the view (its ``stem`` names per-view files, its size the render).
            rgb: [H, W, 3] float in 0..1, the render of ``camera``; None when
                ``needs_rgb`` is False.

        Returns:
            [H', W', C] float32 (C = ``dim``) at any resolution, or None when this source
            has no data for the view (the caller skips the view with a warning).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def image_to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """Convert an image array to [H, W, 3] float32 in 0..1.

    Args:
        image: [H, W, 3] (or [H, W, 4], alpha dropped, or [H, W], grey replicated) as
            uint8 (0..255), uint16 (0..65535) or float (already 0..1).

    Returns:
        [H, W, 3] float32 tensor on the CPU (or the input tensor's device).
    """
    if isinstance(image, np.ndarray):
        arr = np.ascontiguousarray(image)
        # Arrays from PIL are read-only; torch warns about wrapping those.
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    else:
        t = image
    if t.ndim == 2:
        t = t[..., None].expand(-1, -1, 3)
    if t.ndim != 3 or t.shape[-1] not in (3, 4):
        raise FeatureError(
            f"expected an image of shape [H, W, 3], got {list(t.shape)}; "
            "pass RGB (or RGBA/grey) pixels in height, width, channel order"
        )
    t = t[..., :3]
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == torch.uint16:
        return t.float() / 65535.0
    if not t.is_floating_point():
        raise FeatureError(f"unsupported image dtype {t.dtype}; use uint8, uint16 or float 0..1")
    t = t.float()
    lo, hi = (float(v) for v in t.aminmax()) if t.numel() else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # aminmax propagates NaN
        raise FeatureError("float image holds non-finite values (NaN or Inf)")
    # A float image in 0..255 is a common slip; it would silently saturate the model input.
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise FeatureError(
            f"float image values span {lo:.3g}..{hi:.3g}; expected 0..1 (divide 8-bit data by 255)"
        )
    return t.clamp(0.0, 1.0)


def load_image(path: str | Path) -> Tensor:
    """Read an image file (PNG, JPEG, ...) as [H, W, 3] float32 in 0..1.

    Decoded by :func:`gsbp_ros.images.read_rgb_image` (8 bits per channel), the reader the
    CLI and nodes use for source photos, so every photo reaches a model the same way.
    """
    from gsbp_ros.images import read_rgb_image

    return image_to_tensor(read_rgb_image(path))


def check_rgb(rgb: Tensor | None, source: str) -> Tensor:
    """Validate the RGB render handed to a source that needs one: [H, W, 3] float."""
    if rgb is None:
        raise FeatureError(f"feature source {source!r} needs the RGB render of each view")
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or not rgb.is_floating_point():
        raise FeatureError(
            f"feature source {source!r} expects an RGB render [H, W, 3] float in 0..1, "
            f"got {list(rgb.shape)} {rgb.dtype}"
        )
    return rgb


def view_image(photos: Any, camera: Camera, render: Tensor) -> Tensor:
    """What a model sees of a view: its photo from ``photos`` (a
    :class:`gsbp_ros.photos.PhotoSet`, or None) at the view's size, else its render."""
    return render if photos is None else photos.image(camera, render)


def photos_key(photos: Any) -> dict[str, str]:
    """Cache-key entries of a source's photos (none when it runs on renders only, so fields
    cached before photos existed keep their keys)."""
    return {} if photos is None else {"photos": photos.digest()}


# --- Image preprocessing shared by every transformer source ---------------------------------


def patch_grid(height: int, width: int, *, input_size: int, patch_size: int) -> tuple[int, int]:
    """Token grid (rows, cols) for an image of ``height`` x ``width`` pixels.

    The long side becomes ``input_size`` rounded to a multiple of ``patch_size``; the short
    side keeps the aspect ratio, rounded to a multiple of ``patch_size`` (at least one patch).
    """
    long_tokens = max(1, round(input_size / patch_size))
    short = min(height, width) / max(height, width)
    short_tokens = max(1, round(long_tokens * short))
    return (long_tokens, short_tokens) if height >= width else (short_tokens, long_tokens)


def resize_normalize(
    images: Tensor,
    size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> Tensor:
    """Resize and normalise images for a vision transformer.

    Bilinear with ``antialias=True`` when shrinking (an aliased 4x downsample of a render
    would feed the model moiré the source photos do not have); bilinear never overshoots
    0..1, unlike bicubic. We use ``torch.nn.functional.interpolate`` rather than the
    Hugging Face image processors so that scene renders and source photos go through one
    function, on whatever device the tensors are, without PIL round trips or crops.

    Args:
        images: [B, H, W, 3] float in 0..1.
        size: (h, w) output size in pixels.
        mean, std: per-channel normalisation.

    Returns:
        [B, 3, h, w] normalised, same device and dtype as ``images``.
    """
    x = images.permute(0, 3, 1, 2)
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if tuple(x.shape[-2:]) != tuple(size):
        x = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=shrinking
        )
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def check_images(images: Tensor) -> Tensor:
    """Validate a batch of images: [B, H, W, 3] float in 0..1."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise FeatureError(f"expected images [B, H, W, 3] float in 0..1, got {shape}")
    if not images.is_floating_point():
        raise FeatureError(
            f"expected float images in 0..1, got {images.dtype}; convert with image_to_tensor"
        )
    return images


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float16`` or its name (``"float16"``, ``"fp16"``, ``"bfloat16"``, ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
        "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
        "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    }  # fmt: skip
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise FeatureError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[key]


def as_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a FeatureError for a name torch does not know or a CUDA
    device on a machine without CUDA (checked before any model is loaded)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FeatureError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatureError(f"device {device!r} was requested but this torch has no usable CUDA")
    return dev


def to_device(model: Any, device: torch.device, dtype: torch.dtype, *, what: str) -> Any:
    """Move a model to ``device``/``dtype`` in eval mode, with a readable error."""
    try:
        return model.to(device=device, dtype=dtype).eval()
    except (RuntimeError, AssertionError) as exc:  # e.g. "Torch not compiled with CUDA"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatureError(f"cannot run the {what} model on {device} ({dtype}): {reason}") from exc


# --- Loading pretrained models (shared by the DINOv2 and CLIP sources) ----------------------


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, read at call time.

    huggingface_hub reads these once at import; reading them here lets a process (or a
    test) switch to offline mode after transformers was imported.
    """
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: a local folder or a Hugging Face hub id."""

    spec: str  # what the user wrote
    local_dir: Path | None  # set for local folders

    @property
    def load_arg(self) -> str:
        return str(self.local_dir) if self.local_dir is not None else self.spec


def download_hint(hub_id: str, setting: str) -> str:
    return (
        f"download it on a machine with network: `hf download {hub_id} --local-dir DIR` "
        f"(older huggingface_hub: `huggingface-cli download {hub_id} --local-dir DIR`) "
        f"and set {setting} (node parameter; CLI: --{setting.replace('_', '-')}) to DIR"
    )


def local_files_only(allow_downloads: bool) -> bool:
    """Whether model files must come from disk: unless downloads are allowed explicitly
    (node ``allow_downloads``, CLI ``--allow-downloads``), and always under HF_HUB_OFFLINE.

    A robot without network would otherwise sit in the hub client's retries for a minute
    before learning that a model is missing."""
    return not allow_downloads or hub_offline()


def check_local(ref: ModelRef, *, what: str, setting: str, allow_downloads: bool) -> None:
    """Fail fast, without importing transformers, when a model cannot load from disk.

    A local folder must hold ``config.json``; a hub id must be in the Hugging Face cache
    unless downloads are allowed. Costs a few file lookups.
    """
    if ref.local_dir is not None:
        if not (ref.local_dir / "config.json").is_file():
            raise FeatureError(
                f"{what} model folder {ref.local_dir} has no config.json (not a saved "
                f"transformers model); {download_hint('ORG/NAME', setting)}"
            )
        return
    if not local_files_only(allow_downloads) or model_file(ref, "config.json") is not None:
        return
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if hub_offline() else "downloads are off"
    raise FeatureError(
        f"{what} model {ref.spec!r} is not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {why}; {download_hint(ref.spec, setting)}, or "
        "allow downloads (node: allow_downloads: true; CLI: --allow-downloads)"
    )


def resolve_model(spec: str | Path, *, what: str, default_id: str, setting: str) -> ModelRef:
    """Decide whether ``spec`` names a local folder or a hub id (``org/name``)."""
    text = str(spec).strip()
    if not text:
        raise FeatureError(f"no {what} model given; {download_hint(default_id, setting)}")
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(text, path.resolve())
    # Hub ids are "name" or "org/name"; anything else that does not exist is a wrong path.
    looks_like_path = (
        path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or path.exists()
    )
    if looks_like_path:
        raise FeatureError(
            f"{what} model folder {text} does not exist; {download_hint(default_id, setting)}"
        )
    return ModelRef(text, None)


def load_pretrained(
    ref: ModelRef,
    loader: Any,
    *,
    what: str,
    default_id: str,
    setting: str,
    model_types: tuple[str, ...],
    allow_downloads: bool = False,
) -> Any:
    """``loader.from_pretrained`` that fails with a FeatureError instead of random weights.

    Refuses configs of another architecture and any checkpoint that leaves parameters
    uninitialised (transformers would only warn and run with random values there). Reads
    only local files unless ``allow_downloads`` (see :func:`local_files_only`).
    """
    from transformers import AutoConfig

    hub_id = ref.spec if ref.local_dir is None else default_id
    hint = download_hint(hub_id, setting)
    offline = local_files_only(allow_downloads)
    try:
        config = AutoConfig.from_pretrained(ref.load_arg, local_files_only=offline)
        if config.model_type not in model_types:
            raise FeatureError(
                f"{what} model {ref.spec!r} is a {config.model_type!r} model, "
                f"expected {' or '.join(model_types)}; {hint}"
            )
        model, info = loader.from_pretrained(
            ref.load_arg, config=config, local_files_only=offline, output_loading_info=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        mode = ""
        if offline and ref.local_dir is None:
            mode = " (HF_HUB_OFFLINE is set)" if hub_offline() else " (downloads are off)"
        msg = f"cannot load {what} model {ref.spec!r}{mode}: {reason}; {hint}"
        raise FeatureError(msg) from exc
    missing = sorted(info.get("missing_keys", ()))
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = ", ".join(str(k) for k in (missing + mismatched)[:3])
        raise FeatureError(
            f"{what} model {ref.spec!r} has incomplete or mismatched weights ({bad}, ...); "
            f"refusing to run with randomly initialised layers; {hint}"
        )
    return model


def model_file(ref: ModelRef, filename: str) -> Path | None:
    """A file of the model's folder or hub snapshot (already downloaded), else None."""
    if ref.local_dir is not None:
        path = ref.local_dir / filename
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ref.spec, filename)
    return Path(found) if isinstance(found, str) else None


def norm_stats(
    ref: ModelRef, default: tuple[tuple[float, ...], tuple[float, ...]]
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Normalisation mean/std from the model's ``preprocessor_config.json``, else ``default``."""
    path = model_file(ref, "preprocessor_config.json")
    mean, std = default
    if path is not None:
        try:
            cfg = json.loads(path.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        except (OSError, ValueError) as exc:
            raise FeatureError(f"cannot read {path}: {exc}") from exc
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise FeatureError(f"model {ref.spec!r}: bad image_mean/image_std {mean}/{std}")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


def weights_fingerprint(ref: ModelRef) -> dict[str, str]:
    """What identifies the loaded weights: the hub commit, or a hash of a folder's files."""
    if ref.local_dir is None:
        config = model_file(ref, "config.json")
        # The cache stores each download under snapshots/<commit hash>/.
        if config is not None and config.parent.parent.name == "snapshots":
            return {"revision": config.parent.name}
        return {"revision": "unknown"}
    # transformers loads safetensors when present and ignores the .bin copies beside them.
    files = sorted(ref.local_dir.glob("*.safetensors")) or sorted(
        ref.local_dir.glob("pytorch_model*.bin")
    )
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return {"weights_sha256": h.hexdigest()}


class PatchExtractor:
    """What every ViT patch-feature extractor shares: ONE preprocessing for scene renders and
    source photos alike (the reference code normalised one and not the other), the token grid,
    model loading, and a cache key from the weights.

    Subclasses set the class attributes below and call :meth:`_load` first in their
    constructor; it sets ``ref``, ``device``, ``dtype``, ``patch_size``, ``input_size``,
    ``mean`` and ``std``.
    """

    what: str  # model family in messages, e.g. "DINOv2"
    default_model: str  # hub id named in download hints
    setting: str  # the parameter users set to choose the model, e.g. "dinov2_model"
    model_types: tuple[str, ...]  # accepted ``config.model_type`` values
    default_stats: tuple[tuple[float, float, float], tuple[float, float, float]]  # mean, std

    ref: ModelRef
    device: torch.device
    dtype: torch.dtype
    patch_size: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    allow_downloads: bool = False
    _fingerprint: dict[str, str] | None = None

    @staticmethod
    def _patch_size_of(config: Any) -> int:
        """Patch size in pixels from the loaded model's config."""
        raise NotImplementedError

    def _load(
        self,
        model: str | Path,
        loader: str,
        *,
        input_size: int,
        device: str | torch.device,
        dtype: torch.dtype | str,
        allow_downloads: bool = False,
    ) -> Any:
        """Check the options, then load the weights with ``transformers.<loader>``; returns
        the model, still on the CPU. A model that is not on disk (and may not be downloaded)
        fails before transformers is imported."""
        # Cheap checks first: a bad option must not wait for a model to load.
        self.device = as_device(device)
        self.dtype = as_dtype(dtype)
        try:
            size = int(input_size)
        except (TypeError, ValueError):
            size = 0
        if size < 1:
            raise FeatureError(
                f"{self.what} input_size must be a positive pixel count, got {input_size!r}"
            )
        self.ref = resolve_model(
            model, what=self.what, default_id=self.default_model, setting=self.setting
        )
        self.allow_downloads = bool(allow_downloads)
        check_local(
            self.ref, what=self.what, setting=self.setting, allow_downloads=self.allow_downloads
        )
        import transformers  # after the checks: importing it takes seconds

        net = load_pretrained(
            self.ref,
            getattr(transformers, loader),
            what=self.what,
            default_id=self.default_model,
            setting=self.setting,
            model_types=self.model_types,
            allow_downloads=self.allow_downloads,
        )
        self.patch_size = int(self._patch_size_of(net.config))
        if size < self.patch_size:
            raise FeatureError(
                f"{self.what} input_size {size} is smaller than one patch ({self.patch_size} px)"
            )
        self.input_size = size
        self.mean, self.std = norm_stats(self.ref, self.default_stats)
        return net

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h, w) for an image of ``height`` x ``width`` pixels."""
        return patch_grid(height, width, input_size=self.input_size, patch_size=self.patch_size)

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, H, W, 3] float in 0..1 (any device) -> [B, 3, h*p, w*p] normalised pixels on
        the model's device and dtype, where (h, w) = :meth:`grid_size` (H, W), p the patch."""
        images = check_images(images)
        h, w = self.grid_size(images.shape[1], images.shape[2])
        x = images.to(device=self.device, dtype=torch.float32)
        size = (h * self.patch_size, w * self.patch_size)
        return resize_normalize(x, size, self.mean, self.std).to(self.dtype)

    def _model_key(self) -> dict[str, str]:
        if self._fingerprint is None:  # hashing a local checkpoint reads it once
            self._fingerprint = weights_fingerprint(self.ref)
        return {
            "model": self.ref.spec,
            **self._fingerprint,
            "input_size": str(self.input_size),
            "mean": ",".join(f"{v:g}" for v in self.mean),
            "std": ",".join(f"{v:g}" for v in self.std),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
