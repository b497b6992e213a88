"""Language-aligned dense features: MaskCLIP on transformers' CLIP.

MaskCLIP (Zhou et al., ECCV 2022) reads per-patch embeddings in CLIP's joint image-text
space out of an unchanged CLIP ViT: in the last transformer layer it skips the query-key
attention and keeps only the value path, per token

    dense = visual_projection(post_layernorm(out_proj(v_proj(layer_norm1(x)))))

where ``x`` is the token entering the last layer. Without the attention, a patch no longer
mixes in the (global, CLS-like) content of every other patch, so its embedding describes
its own region. We follow the paper's formulation: no residual and no MLP on that path
(implementations differ here; ClearCLIP, Lan et al. 2024, reports cleaner maps without
both).
The global image embedding (CLS token through the full last layer) is exposed as
:meth:`ClipDense.image_embedding` and equals ``CLIPModel.get_image_features``.

These are not LSeg features; text-query quality is that of MaskCLIP (coarse, noisy).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
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
    local_files_only,
    photos_key,
    to_device,
    view_image,
)

DEFAULT_MODEL = "openai/clip-vit-base-patch16"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_TEMPLATES = ("a photo of a {}.",)


def _pooled(out: object) -> Tensor:
    # transformers 5 returns a model output from get_*_features; 4.x returned the tensor.
    return out if isinstance(out, Tensor) else out.pooler_output  # type: ignore[attr-defined]


class ClipDense(PatchExtractor):
    """Dense CLIP image features (MaskCLIP) and text embeddings in the same space.

    Args:
        model: hub id (``openai/clip-vit-base-patch16``, ...) or a local folder holding a
            ``CLIPModel`` with its tokenizer. Hub ids load from the local cache only, unless
            ``allow_downloads``.
        input_size: long side of the model input in pixels, rounded to a multiple of the
            patch size; position embeddings are interpolated for sizes other than the
            pretraining size (bicubic, transformers' ``interpolate_pos_encoding``).
        device: where the model runs.
        dtype: model precision; embeddings are returned as float32.
        templates: prompt templates with one ``{}``; a prompt's embedding is the
            normalised mean of its templated embeddings. Empty: prompts as written.
        text_cache_size: how many prompt embeddings to keep (least recently used dropped).
        allow_downloads: let a hub id download when it is not cached.
    """

    what = "CLIP"
    default_model = DEFAULT_MODEL
    setting = "clip_model"
    model_types = ("clip",)
    default_stats = (CLIP_MEAN, CLIP_STD)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        input_size: int = 448,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        text_cache_size: int = 1024,
        allow_downloads: bool = False,
    ) -> None:
        templates = (templates,) if isinstance(templates, str) else tuple(templates)
        for t in templates:  # before the model loads: a typo must not wait for it
            if not isinstance(t, str) or t.count("{}") != 1:
                raise FeatureError(f"CLIP prompt template {t!r} must contain exactly one '{{}}'")
        self.templates = templates
        net = self._load(
            model,
            "CLIPModel",
            input_size=input_size,
            device=device,
            dtype=dtype,
            allow_downloads=allow_downloads,
        )
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.ref.load_arg, local_files_only=local_files_only(self.allow_downloads)
            )
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(
                f"CLIP model {self.ref.spec!r} has no usable tokenizer: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
            ) from exc
        self.dim: int = int(net.config.projection_dim)
        self.max_text_tokens: int = int(net.config.text_config.max_position_embeddings)
        # transformers 4.x encoder layers take (x, attention_mask, causal_attention_mask) and
        # return a tuple; 5.x take (x, attention_mask) and return the tensor.
        layer_forward = type(net.vision_model.encoder.layers[0]).forward
        self._legacy_layers = "causal_attention_mask" in inspect.signature(layer_forward).parameters
        self.model = to_device(net, self.device, self.dtype, what=self.what)
        self._text_cache: OrderedDict[str, Tensor] = OrderedDict()
        self._text_cache_size = max(0, int(text_cache_size))

    @staticmethod
    def _patch_size_of(config: Any) -> int:
        return int(config.vision_config.patch_size)

    def _run_layer(self, layer: torch.nn.Module, x: Tensor) -> Tensor:
        """One vision encoder layer without attention mask: [B, T, Cv] -> [B, T, Cv]."""
        if self._legacy_layers:
            return layer(x, None, None)[0]
        return layer(x, None)

    # --- images ---------------------------------------------------------------------------

    def last_layer_input(self, pixels: Tensor) -> Tensor:
        """Tokens entering the last vision layer: [B, 1 + h*w, Cv] (CLS first)."""
        vm = self.model.vision_model
        x = vm.embeddings(pixels, interpolate_pos_encoding=True)
        x = vm.pre_layrnorm(x)
        for layer in vm.encoder.layers[:-1]:
            x = self._run_layer(layer, x)
        return x

    def maskclip_tokens(self, x: Tensor) -> Tensor:
        """MaskCLIP value path of the last layer: [..., Cv] tokens -> [..., D] (unnormalised)."""
        vm = self.model.vision_model
        last = vm.encoder.layers[-1]
        v = last.self_attn.v_proj(last.layer_norm1(x))
        y = last.self_attn.out_proj(v)
        return self.model.visual_projection(vm.post_layernorm(y))

    @torch.no_grad()  # not inference_mode: callers may use the maps in autograd graphs
    def extract(self, images: Tensor) -> Tensor:
        """Dense MaskCLIP features.

        Args:
            images: [B, H, W, 3] float in 0..1.

        Returns:
            [B, h, w, D] float32 with unit L2 norm, in the text space of :meth:`encode_text`.
        """
        pixels = self.preprocess(images)
        b, _, ph, pw = pixels.shape
        h, w = ph // self.patch_size, pw // self.patch_size
        x = self.last_layer_input(pixels)
        dense = self.maskclip_tokens(x[:, 1:]).float().reshape(b, h, w, -1)
        return F.normalize(dense, dim=-1)

    @torch.no_grad()
    def image_embedding(self, images: Tensor) -> Tensor:
        """Global CLIP image embeddings: [B, H, W, 3] in 0..1 -> [B, D] float32, unit norm.

        The CLS token through the full last layer, i.e. ``get_image_features`` at the same
        input (with interpolated position embeddings when ``input_size`` differs).
        """
        pixels = self.preprocess(images)
        vm = self.model.vision_model
        x = self.last_layer_input(pixels)
        cls = self._run_layer(vm.encoder.layers[-1], x)[:, 0]
        emb = self.model.visual_projection(vm.post_layernorm(cls))
        return F.normalize(emb.float(), dim=-1)

    # --- text -----------------------------------------------------------------------------

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Text embeddings in the dense feature space.

        Args:
            prompts: P prompts, e.g. ``["mug", "table"]`` (each filled into the templates).

        Returns:
            [P, D] float32 with unit L2 norm, on the model's device. Embeddings are cached
            per prompt (LRU), so repeated queries cost no model call.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        keys = []
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise FeatureError(f"text prompt {i} is empty; give a word or phrase like 'mug'")
            keys.append(" ".join(p.split()))
        if not keys:
            raise FeatureError("no text prompts given")
        missing = [k for k in dict.fromkeys(keys) if k not in self._text_cache]
        if missing:
            for k, emb in zip(missing, self._embed_texts(missing)):
                self._text_cache[k] = emb
        out = torch.stack([self._text_cache[k] for k in keys])
        for k in keys:  # most recently used last; drop the oldest beyond the cache size
            self._text_cache.move_to_end(k)
        while len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        return out

    @torch.no_grad()
    def _embed_texts(self, prompts: list[str]) -> Tensor:
        """[P] prompts -> [P, D] normalised (template ensemble)."""
        templates = self.templates or ("{}",)
        texts = [t.format(p) for p in prompts for t in templates]
        tok = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        ).to(self.device)
        emb = _pooled(
            self.model.get_text_features(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            )
        )
        emb = F.normalize(emb.float(), dim=-1).reshape(len(prompts), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    def cache_key(self) -> dict[str, str]:
        return {**self._model_key(), "method": "maskclip-v"}


class ClipSource(FeatureSource):
    """MaskCLIP features of each view ([h, w, D] at patch resolution): of its photo when
    ``photos`` (a :class:`gsbp_ros.photos.PhotoSet`) has one, else of its RGB render.

    ``encode_text`` gives the matching text embeddings for queries on the field.
    """

    name = "clip"
    needs_rgb = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        input_size: int = 448,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        extractor: ClipDense | None = None,
        allow_downloads: bool = False,
        photos: Any = None,
    ) -> None:
        self.extractor = extractor or ClipDense(
            model,
            input_size=input_size,
            device=device,
            dtype=dtype,
            templates=templates,
            allow_downloads=allow_downloads,
        )
        self.dim = self.extractor.dim
        self.photos = photos

    def cache_key(self) -> dict[str, str]:
        # Templates only affect text embeddings, not the back-projected field.
        return {"source": self.name, **self.extractor.cache_key(), **photos_key(self.photos)}

    def view_features(self, camera: Camera, rgb: Tensor | None) -> Tensor:
        """[h, w, D] float32 MaskCLIP features of the view's photo or of ``rgb`` [H, W, 3]."""
        image = view_image(self.photos, camera, check_rgb(rgb, self.name))
        return self.extractor.extract(image[None])[0]

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """[P, D] unit-norm text embeddings (see :meth:`ClipDense.encode_text`)."""
        return self.extractor.encode_text(prompts)
