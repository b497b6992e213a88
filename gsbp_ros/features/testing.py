"""Tiny randomly initialised DINOv2 and CLIP models for tests (no network, no weights).

They are saved with ``save_pretrained`` into a folder and loaded back through the same
``from_pretrained(folder)`` path users take, so the loading code is exercised for real.
Their features are NOT semantic: random weights say nothing about mugs or tables. Each
folder carries a ``TINY_RANDOM_MODEL.txt`` saying so.
"""

from __future__ import annotations

from pathlib import Path

import torch

_NOTICE = (
    "Randomly initialised {kind} model built by gsbp_ros.features.testing for tests.\n"
    "Its features are not semantic. Do not use it for real scenes.\n"
)

#: Sizes of the tiny models (tests may rely on them).
TINY_DINOV2 = {"hidden_size": 32, "patch_size": 14, "image_size": 56}
TINY_CLIP = {"hidden_size": 32, "projection_dim": 16, "patch_size": 8, "image_size": 32}


def make_tiny_dinov2(folder: str | Path, *, num_register_tokens: int = 0, seed: int = 0) -> Path:
    """Save a 2-layer, 32-channel DINOv2 (patch 14, 4x4 position grid) into ``folder``.

    With ``num_register_tokens > 0`` it is a Dinov2WithRegisters model. Also writes an
    ImageNet-normalising ``preprocessor_config.json`` like the real checkpoints.
    """
    from transformers import (
        BitImageProcessorPil,
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    folder = Path(folder)
    common = dict(
        hidden_size=TINY_DINOV2["hidden_size"],
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=TINY_DINOV2["image_size"],
        patch_size=TINY_DINOV2["patch_size"],
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        if num_register_tokens:
            cfg = Dinov2WithRegistersConfig(**common, num_register_tokens=num_register_tokens)
            model = Dinov2WithRegistersModel(cfg)
        else:
            model = Dinov2Model(Dinov2Config(**common))
    model.save_pretrained(folder)
    BitImageProcessorPil(
        size={"shortest_edge": 64},
        crop_size={"height": 56, "width": 56},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    (folder / "TINY_RANDOM_MODEL.txt").write_text(_NOTICE.format(kind="DINOv2"))
    return folder


def tiny_clip_tokenizer():
    """A CLIP BPE tokenizer with a handmade vocabulary: every byte, a few merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("m", "u"), ("mu", "g</w>"), ("t", "a"), ("ta", "b"), ("l", "e</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def make_tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a 2-layer CLIP (vision 32 ch, patch 8, 32 px; text 32 ch; joint dim 16).

    Includes a tokenizer (handmade byte-level vocabulary) and a CLIP image processor config,
    so ``from_pretrained(folder)`` finds everything a real checkpoint folder has.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = Path(folder)
    tok = tiny_clip_tokenizer()
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            hidden_act="quick_gelu",
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=TINY_CLIP["hidden_size"],
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TINY_CLIP["image_size"],
            patch_size=TINY_CLIP["patch_size"],
            hidden_act="quick_gelu",
        ),
        projection_dim=TINY_CLIP["projection_dim"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    (folder / "TINY_RANDOM_MODEL.txt").write_text(_NOTICE.format(kind="CLIP"))
    return folder
