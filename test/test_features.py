"""2D feature sources: DINOv2, MaskCLIP, label maps, contrastive codes, registry.

Models are tiny and randomly initialised (gsbp_ros.features.testing), saved with
save_pretrained and loaded back through from_pretrained(folder) like real checkpoints.
Their features mean nothing; these tests check shapes, preprocessing, exactness and errors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError, QueryError
from gsbp_ros.features import (
    ClipDense,
    ClipSource,
    Dinov2Extractor,
    Dinov2Source,
    LabelMapSource,
    image_to_tensor,
    load_image,
    make_source,
    train_identity_codes,
)
from gsbp_ros.features.base import hub_offline, local_files_only, patch_grid, resize_normalize
from gsbp_ros.features.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from gsbp_ros.features.testing import TINY_CLIP, make_tiny_clip, make_tiny_dinov2
from gsbp_ros.images import read_rgb_image


def camera(name: str = "frame_001.jpg", width: int = 12, height: int = 8) -> Camera:
    K = torch.tensor([[10.0, 0, width / 2], [0, 10.0, height / 2], [0, 0, 1]])
    return Camera(name=name, K=K, world_to_cam=torch.eye(4), width=width, height=height)


def rand_images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- shared tiny models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return make_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


@pytest.fixture(scope="module")
def dino(dino_dir):
    return Dinov2Extractor(str(dino_dir), input_size=56)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def clip(clip_dir):
    # 32 px is the tiny model's pretraining size: 4x4 tokens, no position interpolation.
    return ClipDense(str(clip_dir), input_size=TINY_CLIP["image_size"])


# --- images -----------------------------------------------------------------------------------


def test_image_to_tensor_dtypes():
    u8 = np.array([[[0, 128, 255]]], dtype=np.uint8)
    assert torch.allclose(image_to_tensor(u8), torch.tensor([[[0.0, 128 / 255, 1.0]]]))
    u16 = np.array([[[0, 65535, 32768]]], dtype=np.uint16)
    assert torch.allclose(image_to_tensor(u16), torch.tensor([[[0.0, 1.0, 32768 / 65535]]]))
    rgba = np.zeros((2, 3, 4), dtype=np.float32)
    assert image_to_tensor(rgba).shape == (2, 3, 3)
    assert image_to_tensor(np.ones((2, 3), dtype=np.uint8)).shape == (2, 3, 3)
    with pytest.raises(FeatureError, match=r"0\.\.1"):
        image_to_tensor(np.full((2, 2, 3), 200.0))
    with pytest.raises(FeatureError, match=r"\[H, W, 3\]"):
        image_to_tensor(np.zeros((2, 2, 5), dtype=np.uint8))
    with pytest.raises(FeatureError, match="non-finite"):  # NaN slips past a range check
        image_to_tensor(np.full((2, 2, 3), np.nan, dtype=np.float32))


def test_sixteen_bit_grey_photo_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    rgb = read_rgb_image(tmp_path / "g16.png")  # the CLI's and nodes' reader
    want = np.rint(grey / 257.0).astype(np.uint8)  # 65535 -> 255; Pillow alone gives 255s
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert np.array_equal(rgb, np.repeat(want[..., None], 3, axis=-1))
    assert torch.equal(load_image(tmp_path / "g16.png"), image_to_tensor(rgb))


def test_patch_grid_keeps_aspect_and_rounds_to_patches():
    assert patch_grid(480, 640, input_size=448, patch_size=14) == (24, 32)
    assert patch_grid(640, 480, input_size=448, patch_size=14) == (32, 24)
    assert patch_grid(100, 100, input_size=500, patch_size=14) == (36, 36)  # 504 px
    assert patch_grid(1, 1000, input_size=448, patch_size=14) == (1, 32)


def test_resize_antialiases_when_shrinking():
    # One bright column in four: plain bilinear 4x shrink samples between the lines (0);
    # the antialiased one averages them (0.25).
    img = torch.zeros(1, 8, 224, 3)
    img[:, :, ::4] = 1.0
    out = resize_normalize(img, (8, 56), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))[..., 1:-1]
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-5)  # borders aside


# --- DINOv2 -----------------------------------------------------------------------------------


def test_dinov2_grid_shape_non_square_and_normalised(dino):
    assert dino.dim == 32 and dino.patch_size == 14
    assert dino.mean == IMAGENET_MEAN and dino.std == IMAGENET_STD
    landscape = dino.extract(rand_images(1, 30, 70, 3))
    portrait = dino.extract(rand_images(1, 70, 30, 3))
    assert landscape.shape == (1, 2, 4, 32) and portrait.shape == (1, 4, 2, 32)
    assert landscape.dtype == torch.float32
    assert torch.allclose(landscape.norm(dim=-1), torch.ones(1, 2, 4), atol=1e-5)
    assert dino.preprocess(rand_images(1, 30, 70, 3)).shape == (1, 3, 28, 56)


def test_dinov2_batch_equals_single(dino):
    images = rand_images(2, 40, 50, 3, seed=1)
    batch = dino.extract(images)
    for i in range(2):
        assert torch.allclose(batch[i], dino.extract(images[i : i + 1])[0], atol=1e-5)


def test_dinov2_render_and_photo_share_preprocessing(dino, tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (42, 56, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    from_file = load_image(tmp_path / "photo.png")
    render = torch.from_numpy(photo).float() / 255.0  # what the rasteriser hands over
    assert torch.equal(from_file, render)
    source = Dinov2Source(extractor=dino)
    view = source.view_features(camera(width=56, height=42), render)
    assert torch.allclose(view, dino.extract(from_file[None])[0], atol=0)
    expected = resize_normalize(render[None], (42, 56), IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(dino.preprocess(render[None]), expected)


def test_dinov2_register_tokens_are_dropped(tmp_path):
    ex = Dinov2Extractor(str(make_tiny_dinov2(tmp_path, num_register_tokens=4)), input_size=56)
    assert ex.num_register_tokens == 4
    assert ex.extract(rand_images(1, 56, 28, 3)).shape == (1, 4, 2, 32)


def test_dinov2_missing_model_dir_names_model(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FeatureError, match="no_such_model") as info:
        Dinov2Extractor(str(missing))
    assert "hf download facebook/dinov2-small" in str(info.value)
    assert "dinov2_model" in str(info.value)


def test_dinov2_refuses_random_weights(dino_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    no_weights = tmp_path / "no_weights"
    shutil.copytree(dino_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FeatureError, match="cannot load DINOv2 model"):
        Dinov2Extractor(str(no_weights))
    partial = tmp_path / "partial"
    shutil.copytree(dino_dir, partial)
    tensors = load_file(partial / "model.safetensors")
    tensors.pop(next(k for k in tensors if "layernorm" in k))
    save_file(tensors, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FeatureError, match="refusing to run with randomly initialised"):
        Dinov2Extractor(str(partial))


def _spy_from_pretrained(monkeypatch) -> list[dict]:
    import transformers

    calls: list[dict] = []
    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    return calls


def test_missing_hub_model_fails_before_loading_offline_by_default(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # An empty hub cache (huggingface_hub reads HF_HOME only at import).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    calls = _spy_from_pretrained(monkeypatch)
    # Downloads are off unless allowed: no hub request, no transformers loading at all.
    with pytest.raises(FeatureError, match="downloads are off") as info:
        Dinov2Extractor("facebook/dinov2-small")
    assert "allow_downloads" in str(info.value) and "hf download" in str(info.value)
    assert str(tmp_path / "hub") in str(info.value)
    assert calls == []
    # HF_HUB_OFFLINE wins over allow_downloads.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline() and local_files_only(True)
    with pytest.raises(FeatureError, match="HF_HUB_OFFLINE is set"):
        Dinov2Extractor("facebook/dinov2-small", allow_downloads=True)
    assert calls == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert local_files_only(False) and not local_files_only(True)
    # A folder that is not a saved model is refused before loading too.
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureError, match=r"has no config\.json"):
        Dinov2Extractor(str(tmp_path / "empty"))
    assert calls == []


def test_missing_model_is_reported_without_importing_transformers(tmp_path):
    code = (
        "import sys\n"
        "from gsbp_ros.errors import FeatureError\n"
        "from gsbp_ros.features import make_source\n"
        "for spec in ('facebook/dinov2-small', 'openai/clip-vit-base-patch16'):\n"
        "    try:\n"
        "        make_source('dinov2' if 'dino' in spec else 'clip', model=spec)\n"
        "    except FeatureError as exc:\n"
        "        print('error:', exc)\n"
        "print('transformers' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hub")}
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False", out.stdout
    assert len(lines) == 3 and all("not in the local Hugging Face cache" in ln for ln in lines[:2])


def test_cached_model_loads_with_local_files_only(monkeypatch, tmp_path):
    import huggingface_hub

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-dino"
    make_tiny_dinov2(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = _spy_from_pretrained(monkeypatch)
    Dinov2Extractor("tiny-org/tiny-dino", input_size=56)
    assert calls and all(c.get("local_files_only") is True for c in calls)


def test_hub_id_loads_offline_from_cache_with_revision(monkeypatch, tmp_path):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-dino"
    make_tiny_dinov2(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    key = Dinov2Extractor("tiny-org/tiny-dino", input_size=56).cache_key()
    assert key["model"] == "tiny-org/tiny-dino" and key["revision"] == commit
    assert key["mean"] == "0.485,0.456,0.406"  # read from the snapshot's preprocessor config


def test_dinov2_cache_key(dino, dino_dir, tmp_path):
    key = dino.cache_key()
    assert key["model"] == str(dino_dir) and key["input_size"] == "56"
    assert len(key["weights_sha256"]) == 64
    assert Dinov2Extractor(str(dino_dir), input_size=56).cache_key() == key
    assert Dinov2Extractor(str(dino_dir), input_size=112).cache_key() != key
    other = Dinov2Extractor(str(make_tiny_dinov2(tmp_path, seed=1)), input_size=56)
    assert other.cache_key()["weights_sha256"] != key["weights_sha256"]


def test_normalisation_comes_from_the_model_folder(dino_dir, tmp_path):
    import json
    import shutil

    folder = tmp_path / "dino"
    shutil.copytree(dino_dir, folder)
    cfg_path = folder / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    cfg_path.write_text(json.dumps(cfg))
    ex = Dinov2Extractor(str(folder), input_size=28)
    assert ex.mean == (0.5, 0.5, 0.5) and ex.cache_key()["std"] == "0.25,0.25,0.25"
    grey = torch.full((1, 28, 28, 3), 0.75)
    assert torch.allclose(ex.preprocess(grey), torch.ones(1, 3, 28, 28))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu(dino_dir, clip_dir):
    images = rand_images(2, 40, 60, 3, seed=6)
    for cls, folder in ((Dinov2Extractor, dino_dir), (ClipDense, clip_dir)):
        cpu = cls(str(folder), input_size=56).extract(images)
        gpu = cls(str(folder), input_size=56, device="cuda", dtype="float16").extract(images)
        assert gpu.dtype == torch.float32 and gpu.device.type == "cuda"
        assert (gpu.cpu() * cpu).sum(-1).min() > 0.99  # cosine similarity per token


def test_bad_model_options_fail_fast_with_feature_errors(dino_dir):
    # None of these may reach the (slow) model load, nor escape as a torch/ValueError.
    for kwargs, msg in [
        ({"device": "gpu"}, "unknown device"),
        ({"input_size": "big"}, "input_size"),
        ({"input_size": 0}, "input_size"),
        ({"dtype": "float17"}, "unknown dtype"),
    ]:
        with pytest.raises(FeatureError, match=msg):
            Dinov2Extractor("no/such-model-anywhere", **kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(FeatureError, match="CUDA"):
            Dinov2Extractor("no/such-model-anywhere", device="cuda")
    with pytest.raises(FeatureError, match="smaller than one patch"):
        Dinov2Extractor(str(dino_dir), input_size=13)


def test_dinov2_source_contract(dino):
    source = Dinov2Source(extractor=dino)
    assert source.name == "dinov2" and source.needs_rgb and source.dim == 32
    assert source.cache_key()["source"] == "dinov2"
    with pytest.raises(FeatureError, match="needs the RGB render"):
        source.view_features(camera(), None)
    with pytest.raises(FeatureError, match="unknown dtype"):
        Dinov2Extractor("facebook/dinov2-small", dtype="float17")


# --- CLIP -------------------------------------------------------------------------------------


def test_clip_shapes_and_shared_dimension(clip):
    dense = clip.extract(rand_images(2, 20, 48, 3))
    assert dense.shape == (2, 2, 4, 16)  # long side 32 px = 4 patches of 8
    assert torch.allclose(dense.norm(dim=-1), torch.ones(2, 2, 4), atol=1e-5)
    text = clip.encode_text(["mug", "table"])
    assert text.shape == (2, 16) == (2, clip.dim)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)


def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _lin(x, sd, prefix):
    return x @ sd[f"{prefix}.weight"].T + sd[f"{prefix}.bias"]


def maskclip_oracle(model, pixels: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """MaskCLIP feature of one patch, from the raw weights in float64, no model code."""
    vc = model.config.vision_config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    p, c, heads, eps = vc.patch_size, vc.hidden_size, vc.num_attention_heads, vc.layer_norm_eps
    x = pixels[0].double()
    gh, gw = x.shape[1] // p, x.shape[2] // p
    patches = x.unfold(1, p, p).unfold(2, p, p).permute(1, 2, 0, 3, 4).reshape(gh * gw, -1)
    tokens = patches @ sd["vision_model.embeddings.patch_embedding.weight"].reshape(c, -1).T
    pos = sd["vision_model.embeddings.position_embedding.weight"]
    grid = round(math.sqrt(pos.shape[0] - 1))
    if (gh, gw) != (grid, grid):  # transformers' documented bicubic interpolation
        img = pos[1:].reshape(1, grid, grid, c).permute(0, 3, 1, 2)
        img = F.interpolate(img, size=(gh, gw), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:1], img.permute(0, 2, 3, 1).reshape(gh * gw, c)])
    x = torch.cat([sd["vision_model.embeddings.class_embedding"][None], tokens]) + pos
    x = _ln(x, sd, "vision_model.pre_layrnorm", eps)
    n = vc.num_hidden_layers
    for i in range(n - 1):
        L = f"vision_model.encoder.layers.{i}"
        h = _ln(x, sd, f"{L}.layer_norm1", eps)
        q, k, v = (
            _lin(h, sd, f"{L}.self_attn.{m}_proj").reshape(-1, heads, c // heads).transpose(0, 1)
            for m in "qkv"
        )
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c // heads), dim=-1)
        x = x + _lin((att @ v).transpose(0, 1).reshape(-1, c), sd, f"{L}.self_attn.out_proj")
        h = _lin(_ln(x, sd, f"{L}.layer_norm2", eps), sd, f"{L}.mlp.fc1")
        x = x + _lin(h * torch.sigmoid(1.702 * h), sd, f"{L}.mlp.fc2")  # quick_gelu
    L = f"vision_model.encoder.layers.{n - 1}"
    token = x[1 + row * gw + col]
    v = _lin(_ln(token, sd, f"{L}.layer_norm1", eps), sd, f"{L}.self_attn.v_proj")
    y = _ln(_lin(v, sd, f"{L}.self_attn.out_proj"), sd, "vision_model.post_layernorm", eps)
    return F.normalize(y @ sd["visual_projection.weight"].T, dim=0).float()


@pytest.mark.parametrize("size", [(32, 32), (16, 32)], ids=["standard", "interpolated"])
def test_maskclip_matches_raw_weight_oracle(clip, size):
    images = rand_images(1, *size, 3, seed=3)
    dense = clip.extract(images)
    pixels = clip.preprocess(images)
    gh, gw = dense.shape[1:3]
    for row, col in [(0, 0), (gh - 1, gw - 1), (1, 2)]:
        expected = maskclip_oracle(clip.model, pixels, row, col)
        assert torch.allclose(dense[0, row, col], expected, atol=1e-5), (row, col)


def test_clip_global_path_matches_get_image_features(clip, clip_dir):
    images = rand_images(2, 32, 32, 3, seed=4)
    with torch.no_grad():
        ref = clip.model.get_image_features(pixel_values=clip.preprocess(images))
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    assert torch.allclose(clip.image_embedding(images), F.normalize(ref, dim=-1), atol=1e-5)
    # Other input sizes go through transformers' position interpolation.
    big = ClipDense(str(clip_dir), input_size=48)
    images = rand_images(1, 30, 48, 3, seed=5)
    with torch.no_grad():
        ref = big.model.get_image_features(
            pixel_values=big.preprocess(images), interpolate_pos_encoding=True
        )
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    assert torch.allclose(big.image_embedding(images), F.normalize(ref, dim=-1), atol=1e-5)


def test_clip_text_templates_cache_and_errors(clip_dir, monkeypatch):
    raw = ClipDense(str(clip_dir), input_size=32, templates=(), text_cache_size=2)
    templated = ClipDense(str(clip_dir), input_size=32)  # "a photo of a {}."
    assert torch.allclose(
        templated.encode_text(["mug"]), raw.encode_text(["a photo of a mug."]), atol=1e-6
    )
    tok = raw.tokenizer(["a  mug"], return_tensors="pt")
    with torch.no_grad():
        ref = raw.model.get_text_features(**tok)
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    assert torch.allclose(raw.encode_text(["a  mug"]), F.normalize(ref, dim=-1), atol=1e-6)

    calls = []
    real = raw._embed_texts
    monkeypatch.setattr(raw, "_embed_texts", lambda p: calls.append(list(p)) or real(p))
    first = raw.encode_text(["mug", "table", "mug"])
    assert calls == [["mug", "table"]] and torch.equal(first[0], first[2])
    raw.encode_text(["table", " mug "])
    assert len(calls) == 1  # cached, whitespace-insensitive
    raw.encode_text(["bowl"])  # cache size 2: evicts the least recently used ("table")
    raw.encode_text(["mug"])
    raw.encode_text(["table"])
    assert calls[1:] == [["bowl"], ["table"]]

    for bad in (["mug", "  "], [""], []):
        with pytest.raises(FeatureError):
            raw.encode_text(bad)
    with pytest.raises(FeatureError, match="exactly one"):
        ClipDense(str(clip_dir), templates=("a photo",))


def test_clip_runs_transformers_4_style_layers(clip, clip_dir, monkeypatch):
    """transformers 4.x encoder layers take a causal mask and return a tuple."""
    from transformers.models.clip import modeling_clip

    images = rand_images(1, 16, 32, 3, seed=7)
    dense, pooled = clip.extract(images), clip.image_embedding(images)
    real = modeling_clip.CLIPEncoderLayer.forward

    def legacy(self, hidden_states, attention_mask, causal_attention_mask, output_attentions=False):
        assert causal_attention_mask is None
        return (real(self, hidden_states, attention_mask),)

    monkeypatch.setattr(modeling_clip.CLIPEncoderLayer, "forward", legacy)
    old = ClipDense(str(clip_dir), input_size=TINY_CLIP["image_size"])
    assert torch.equal(old.extract(images), dense)
    assert torch.equal(old.image_embedding(images), pooled)


def test_clip_source_and_wrong_architecture(clip, dino_dir):
    source = ClipSource(extractor=clip)
    assert source.name == "clip" and source.needs_rgb and source.dim == 16
    assert source.view_features(camera(), rand_images(8, 12, 3)).shape == (3, 4, 16)
    assert source.encode_text(["mug"]).shape == (1, 16)
    assert source.cache_key()["method"] == "maskclip-v"
    with pytest.raises(FeatureError, match="is a 'dinov2' model"):
        ClipDense(str(dino_dir))


# --- label maps -------------------------------------------------------------------------------

NAMES = ["mug", "bowl", "table"]
LABELS = np.array([[0, 1, 1, 2], [3, 3, 0, 2]])  # [2, 4]


def test_label_maps_png8_png16_npy(tmp_path):
    Image.fromarray(LABELS.astype(np.uint8)).save(tmp_path / "a.png")  # mode L
    Image.fromarray(LABELS.astype(np.uint16)).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode.startswith("I")  # 16-bit
    np.save(tmp_path / "c.npy", LABELS.astype(np.int32))
    palette = Image.new("P", (4, 2))  # VOC-style: palette indices are the ids
    palette.putdata(LABELS.flatten().tolist())
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "d.png")
    source = LabelMapSource(tmp_path, NAMES)
    assert source.name == "labels" and not source.needs_rgb and source.dim == 4
    # labels 1..3 -> channels 0..2; unlabelled (0) -> the background channel 3
    table = torch.eye(4)[[3, 0, 1, 2]]
    expected = table[torch.from_numpy(LABELS)]
    for stem in "abcd":
        feats = source.view_features(camera(f"images/{stem}.jpg", width=4, height=2), None)
        assert feats.dtype == torch.float32 and torch.equal(feats, expected), stem
    assert source.view_features(camera("e.jpg", width=4, height=2), None) is None


def test_label_map_out_of_range_and_bad_files(tmp_path):
    np.save(tmp_path / "big.npy", np.array([[0, 4]]))
    np.save(tmp_path / "float.npy", np.zeros((2, 2), dtype=np.float32))
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    np.save(tmp_path / "both.npy", np.zeros((2, 2), dtype=np.uint8))
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / "both.png")
    source = LabelMapSource(tmp_path, NAMES)
    with pytest.raises(FeatureError, match=r"big\.npy holds value 4.*3 label names"):
        source.view_features(camera("big.png"), None)
    with pytest.raises(FeatureError, match="integers"):
        source.view_features(camera("float"), None)
    with pytest.raises(FeatureError, match="RGB image"):
        source.view_features(camera("rgb"), None)
    with pytest.raises(FeatureError, match="keep one"):
        source.view_features(camera("both"), None)
    with pytest.raises(FeatureError, match="does not exist"):
        LabelMapSource(tmp_path / "nope", NAMES)
    with pytest.raises(FeatureError, match="distinct"):
        LabelMapSource(tmp_path, ["mug", "Mug"])
    with pytest.raises(FeatureError, match="distinct"):  # one prompt could not tell them apart
        LabelMapSource(tmp_path, ["mug_handle", "Mug Handle"])
    with pytest.raises(FeatureError, match="dim"):
        LabelMapSource(tmp_path, NAMES, dim=2)


def test_label_map_size_mismatch_uses_nearest_ids(tmp_path):
    Image.fromarray(LABELS.astype(np.uint8)).save(tmp_path / "v.png")
    source = LabelMapSource(tmp_path, NAMES)
    up = source.view_features(camera("v", width=8, height=4), None)  # 2x: 2x2 blocks
    blocks = np.repeat(np.repeat(LABELS, 2, axis=0), 2, axis=1)
    assert torch.equal(
        up.argmax(-1)[torch.from_numpy(blocks) > 0], torch.from_numpy(blocks - 1)[blocks > 0]
    )
    odd = source.view_features(camera("v", width=7, height=3), None)
    assert odd.shape == (3, 7, 4)
    assert set(odd.sum(-1).unique().tolist()) <= {0.0, 1.0}  # never a blend of two codes
    down = source.view_features(camera("v", width=2, height=1), None)
    assert torch.equal(down[0].argmax(-1), torch.tensor([2, 1]))  # pixels (1,1) and (1,3)


def test_label_decode_round_trip_and_text_query(tmp_path):
    source = LabelMapSource(tmp_path, NAMES)
    # columns: mug, bowl, table, background (unlabelled pixels)
    feats = torch.tensor(
        [
            [0.0, 0.7, 0.3, 0.0],
            [0.0, 0.0, 0.0, 0.0],  # never seen
            [0.1, 0.0, 0.0, 0.0],
            [0.2, 0.2, 0.6, 0.0],
            [0.3, 0.0, 0.0, 0.7],  # mostly seen by unlabelled pixels: background
            [0.5, 0.0, 0.0, 0.5],  # a tie goes to the background
            [0.4, 0.0, 0.0, 0.35],  # the label outweighs the background
        ]
    )
    labels, conf = source.decode(feats)
    assert labels.tolist() == [1, -1, 0, 2, -1, -1, 0]
    assert torch.allclose(conf, torch.tensor([0.7, 0.0, 1.0, 0.6, 0.7, 0.5, 0.4 / 0.75]))
    assert torch.equal(source.text_query("TABLE"), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(source.background_code, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    parts = LabelMapSource(tmp_path, ["mug_handle", "mug_body"])
    assert torch.equal(parts.text_query(" Mug Handle"), torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(QueryError, match="known labels: mug, bowl, table"):
        source.text_query("cup")
    with pytest.raises(FeatureError, match=r"\[N, 4\]"):
        source.decode(torch.zeros(2, 3))


def test_contrastive_label_source_round_trip(tmp_path):
    names = [f"part{i}" for i in range(12)]
    np.save(tmp_path / "v.npy", np.arange(13).reshape(1, 13))
    source = LabelMapSource(tmp_path, names, encoding="contrastive", dim=6, steps=100)
    assert source.dim == 6
    feats = source.view_features(camera("v", width=13, height=1), None)[0]  # [13, 6]
    assert torch.equal(feats[0], source.background_code)  # unlabelled pixels
    labels, conf = source.decode(0.3 * feats)  # decoding ignores the length of a code
    assert labels.tolist() == [-1, *range(12)]
    assert bool((conf > 0).all())
    _, never_seen = source.decode(torch.zeros(1, 6))
    assert never_seen.tolist() == [0.0]
    assert torch.equal(source.text_query("Part3"), source.codes[3])
    assert source.cache_key()["encoding"] == "contrastive"


def test_label_cache_key_tracks_map_content(tmp_path):
    np.save(tmp_path / "v.npy", LABELS)
    key = LabelMapSource(tmp_path, NAMES).cache_key()
    assert LabelMapSource(tmp_path, NAMES).cache_key() == key
    np.save(tmp_path / "v.npy", LABELS[::-1])
    assert LabelMapSource(tmp_path, NAMES).cache_key() != key
    assert LabelMapSource(tmp_path, ["a", "b", "c"]).cache_key()["labels"] != key["labels"]
    assert LabelMapSource(tmp_path, NAMES, unlabelled="ignore").cache_key() != key


def test_unlabelled_pixels_ignored_cast_no_vote(tmp_path):
    np.save(tmp_path / "v.npy", LABELS)
    source = LabelMapSource(tmp_path, NAMES, unlabelled="ignore")
    feats = source.view_features(camera("v", width=4, height=2), None)
    expected = torch.eye(4)[[3, 0, 1, 2]][torch.from_numpy(LABELS)]
    expected[torch.from_numpy(LABELS) == 0] = 0.0  # no code at all, not the background's
    assert torch.equal(feats, expected)
    # a Gaussian seen only by unlabelled pixels decodes as "nothing seen"
    labels, conf = source.decode(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0]]))
    assert labels.tolist() == [-1, 0] and conf.tolist() == [0.0, 1.0]


# --- contrastive identity codes ---------------------------------------------------------------


def test_identity_codes_many_labels_few_dims():
    state = torch.random.get_rng_state()
    codes, decoder = train_identity_codes(40, 16, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert codes.shape == (40, 16)
    assert torch.allclose(codes.norm(dim=1), torch.ones(40), atol=1e-5)
    labels = torch.arange(40)
    assert (decoder(codes).argmax(1) == labels).float().mean() == 1.0
    noisy_labels = labels.repeat(20)
    noise = 0.05 * torch.randn(800, 16, generator=torch.Generator().manual_seed(1))
    noisy_acc = (decoder(codes[noisy_labels] + noise).argmax(1) == noisy_labels).float().mean()
    assert noisy_acc > 0.95
    start, _ = train_identity_codes(40, 16, steps=0, seed=0)
    eye = torch.eye(40)
    assert torch.linalg.matrix_norm(codes @ codes.T - eye) < torch.linalg.matrix_norm(
        start @ start.T - eye
    )
    with torch.no_grad():  # e.g. a node building its sources under no_grad
        again, decoder2 = train_identity_codes(40, 16, seed=0)
    assert torch.equal(again, codes) and torch.equal(decoder2.weight, decoder.weight)
    assert not torch.equal(train_identity_codes(40, 16, steps=0, seed=1)[0], start)


# --- registry ---------------------------------------------------------------------------------


def test_make_source_registry(tmp_path, dino_dir, clip_dir):
    with pytest.raises(FeatureError, match="known: dinov2, clip, labels"):
        make_source("lseg")
    with pytest.raises(FeatureError, match=r"unknown option.*colour"):
        make_source("labels", folder=tmp_path, label_names=NAMES, colour=1)
    with pytest.raises(FeatureError, match=r"needs option.*label_names"):
        make_source("labels", folder=tmp_path)
    assert isinstance(make_source("labels", folder=tmp_path, label_names=NAMES), LabelMapSource)
    dino = make_source("DINOv2", model=str(dino_dir), input_size=28, dtype="float32")
    assert isinstance(dino, Dinov2Source) and dino.extractor.input_size == 28
    assert isinstance(make_source("clip", model=str(clip_dir), input_size=32), ClipSource)


def test_features_package_import_is_light():
    code = "import sys, gsbp_ros.features; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
