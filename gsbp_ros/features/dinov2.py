"""DINOv2 patch features (transformers' Dinov2Model / Dinov2WithRegistersModel).

Weights are never downloaded implicitly into a random fallback: a model that cannot be
loaded raises a FeatureError that says how to fetch it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.features.base import (
    FeatureSource,
    PatchExtractor,
    check_rgb,
    photos_key,
    to_device,
    view_image,
)

DEFAULT_MODEL = "facebook/dinov2-small"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Dinov2Extractor(PatchExtractor):
    """Dense DINOv2 features: one L2-normalised vector per patch.

    Args:
        model: hub id (``facebook/dinov2-small``, ``facebook/dinov2-with-registers-base``,
            ...) or a local folder saved with ``save_pretrained`` / ``hf download``.
            Hub ids load from the local cache only, unless ``allow_downloads``.
        input_size: long side of the model input in pixels, rounded to a multiple of the
            patch size (448 -> 32 tokens for patch 14); the short side keeps the aspect.
        device: where the model runs.
        dtype: model and input precision (``torch.float16`` halves memory on GPUs);
            features are returned as float32 either way.
        allow_downloads: let a hub id download when it is not cached (off by default: a
            robot without network learns at once that a model is missing).
    """

    what = "DINOv2"
    default_model = DEFAULT_MODEL
    setting = "dinov2_model"
    model_types = ("dinov2", "dinov2_with_registers")
    default_stats = (IMAGENET_MEAN, IMAGENET_STD)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        input_size: int = 448,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        allow_downloads: bool = False,
    ) -> None:
        net = self._load(
            model,
            "AutoModel",
            input_size=input_size,
            device=device,
            dtype=dtype,
            allow_downloads=allow_downloads,
        )
        self.num_register_tokens: int = int(getattr(net.config, "num_register_tokens", 0) or 0)
        self.dim: int = int(net.config.hidden_size)
        self.model = to_device(net, self.device, self.dtype, what=self.what)

    @staticmethod
    def _patch_size_of(config: Any) -> int:
        patch = config.patch_size
        return int(patch if isinstance(patch, int) else patch[0])

    @torch.no_grad()  # not inference_mode: callers may use the maps in autograd graphs
    def extract(self, images: Tensor) -> Tensor:
        """Patch features of a batch of images.

        Args:
            images: [B, H, W, 3] float in 0..1.

        Returns:
            [B, h, w, C] float32, unit L2 norm per token, on the model's device: the last
            hidden state after the final layernorm without the CLS (and register) tokens.
        """
        pixels = self.preprocess(images)
        b, _, ph, pw = pixels.shape
        h, w = ph // self.patch_size, pw // self.patch_size
        hidden = self.model(pixel_values=pixels).last_hidden_state  # [B, 1+R+h*w, C]
        tokens = hidden[:, 1 + self.num_register_tokens :]
        if tokens.shape[1] != h * w:
            raise FeatureError(
                f"DINOv2 model {self.ref.spec!r} returned {tokens.shape[1]} patch tokens for a "
                f"{h}x{w} grid; is num_register_tokens set correctly in its config?"
            )
        tokens = tokens.float().reshape(b, h, w, -1)
        return F.normalize(tokens, dim=-1)

    def cache_key(self) -> dict[str, str]:
        return self._model_key()


class Dinov2Source(FeatureSource):
    """DINOv2 features of each view ([h, w, C] at patch resolution): of its photo when
    ``photos`` (a :class:`gsbp_ros.photos.PhotoSet`) has one, else of its RGB render.

    ``extractor`` is public so that affordance sources (photos) go through the same model
    and preprocessing: ``source.extractor.extract(images)``.
    """

    name = "dinov2"
    needs_rgb = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        input_size: int = 448,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        extractor: Dinov2Extractor | None = None,
        allow_downloads: bool = False,
        photos: Any = None,
    ) -> None:
        self.extractor = extractor or Dinov2Extractor(
            model,
            input_size=input_size,
            device=device,
            dtype=dtype,
            allow_downloads=allow_downloads,
        )
        self.dim = self.extractor.dim
        self.photos = photos

    def cache_key(self) -> dict[str, str]:
        return {"source": self.name, **self.extractor.cache_key(), **photos_key(self.photos)}

    def view_features(self, camera: Camera, rgb: Tensor | None) -> Tensor:
        """[h, w, C] float32 features of the view's photo or of ``rgb`` [H, W, 3] (0..1),
        on the model's device."""
        image = view_image(self.photos, camera, check_rgb(rgb, self.name))
        return self.extractor.extract(image[None])[0]
