"""Vision towers: sampled frames → video tokens with timestamps, plus zero-shot visual tags.

A tower maps preprocessed frames (T, 3, S, S) to a feature grid (T, D, h, w) and, when it has a label set,
per-frame label logits (T, L). `pool_video_tokens` turns the grid into video tokens: spatial average pooling to
`spatial_tokens` per frame, then averaging of `temporal_stride` consecutive frames, keeping their timestamps.
Towers are built by name from `VISION_BUILDERS`, so new ones (InternViT, SigLIP, a LLaVA-OneVision tower) are
added without touching the model or runner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig, resolve_path
from ..errors import ConfigError
from ..weights import check_weights_dir, load_imagenet_classes

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_frames(
    pixels: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB → (T, 3, size, size) float: resize the shorter side to `size`, centre crop, normalise."""
    assert pixels.ndim == 4 and pixels.shape[-1] == 3, pixels.shape
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, :, top : top + size, left : left + size]  # (T, 3, S, S)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def pool_video_tokens(
    grid: torch.Tensor, times: torch.Tensor, spatial_tokens: int, temporal_stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature grid (T, D, h, w) and frame times (T,) → tokens (N, D) and token times (N,).

    N = ceil(T / temporal_stride) * spatial_tokens; a token's time is the mean time of the frames it pools.
    """
    side = round(spatial_tokens**0.5)
    assert side * side == spatial_tokens, spatial_tokens
    t, d = grid.shape[:2]
    x = F.adaptive_avg_pool2d(grid, side).flatten(2).transpose(1, 2)  # (T, side*side, D)
    pad = (-t) % temporal_stride
    if pad:  # repeat the last frame so that every group is full
        x = torch.cat([x, x[-1:].expand(pad, -1, -1)], dim=0)
        times = torch.cat([times, times[-1:].expand(pad)])
    groups = x.shape[0] // temporal_stride
    x = x.view(groups, temporal_stride, spatial_tokens, d).mean(1)  # (G, S, D)
    group_times = times.view(groups, temporal_stride).mean(1)  # (G,)
    return x.reshape(groups * spatial_tokens, d), group_times.repeat_interleave(spatial_tokens)


def top_tags(label_logits: torch.Tensor, labels: list[str], k: int) -> list[str]:
    """Labels with the highest mean probability over frames (T, L), best first."""
    if k <= 0 or not labels:
        return []
    probs = label_logits.float().softmax(-1).mean(0)  # (L,)
    return [labels[i] for i in probs.topk(min(k, len(labels))).indices.tolist()]


class VisionTower(nn.Module):
    """Frames → feature grid (T, D, h, w) and optional label logits (T, L) for zero-shot tags."""

    feature_dim: int
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    labels: list[str]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class TinyVisionTower(VisionTower):
    """Random-init two-layer conv stem: for tests (no labels)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.feature_dim, self.labels = hidden_size, []
        self.stem = nn.Sequential(
            nn.Conv2d(3, hidden_size, 8, stride=8), nn.GELU(), nn.Conv2d(hidden_size, hidden_size, 2, 2)
        )

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.stem(pixels), None  # (T, D, S/16, S/16)


class EfficientNetLite0Tower(VisionTower):
    """ImageNet EfficientNet-Lite0: 1280-d 7x7 grid; its classifier gives ImageNet labels as visual tags."""

    def __init__(self, weights_dir: Path):
        from .efficientnet import build_efficientnet_lite0, load_efficientnet_config

        super().__init__()
        self.net = build_efficientnet_lite0(weights_dir)
        config = load_efficientnet_config(weights_dir)
        self.mean, self.std = tuple(config["mean"]), tuple(config["std"])  # TF-Lite's (x*255 - 127) / 128
        self.feature_dim = config["feature_dim"]
        self.labels = load_imagenet_classes()
        assert len(self.labels) == self.net._fc.out_features, "ImageNet label file and classifier disagree"

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.net.extract_features(pixels)  # (T, 1280, h, w)
        logits = self.net._fc(grid.mean((2, 3)))  # (T, 1000)
        return grid, logits


class ClipTower(VisionTower):
    """A transformers CLIP (or SigLIP) folder: patch grid of the vision tower; tags by image-text similarity.

    The label set is the ImageNet class list, written as "a photo of a {label}." and embedded once by the
    text tower.
    """

    def __init__(self, weights_dir: Path, image_size: int):
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        check_weights_dir(
            weights_dir,
            ["config.json"],
            "a transformers CLIP/SigLIP folder, e.g. /app/clip-vit-large-patch14-336",
        )
        self.model = AutoModel.from_pretrained(weights_dir).eval()
        vision_cfg = self.model.config.vision_config
        if vision_cfg.image_size != image_size:
            raise ConfigError(
                f"vision.image_size={image_size} but {weights_dir} expects {vision_cfg.image_size}"
            )
        self.feature_dim = vision_cfg.hidden_size
        self.labels = load_imagenet_classes()
        tokenizer = AutoTokenizer.from_pretrained(weights_dir)
        with torch.no_grad():
            text = tokenizer(
                [f"a photo of a {label}." for label in self.labels], padding=True, return_tensors="pt"
            )
            label_emb = self.model.get_text_features(**text).pooler_output  # (L, E)
        self.register_buffer("label_emb", F.normalize(label_emb, dim=-1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.get_image_features(pixel_values=pixels)
        patches = (
            out.last_hidden_state
        )  # (T, 1 + h*w, D) for CLIP (class token first), (T, h*w, D) for SigLIP
        side = int(patches.shape[1] ** 0.5)
        patches = patches[:, -side * side :]  # drop the class token if present
        grid = patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)  # (T, D, h, w)
        image_emb = F.normalize(out.pooler_output, dim=-1)  # (T, E)
        logits = 100.0 * image_emb @ self.label_emb.T  # (T, L)
        return grid, logits


VISION_BUILDERS: dict[str, Callable[[VisionConfig], VisionTower]] = {
    "tiny": lambda cfg: TinyVisionTower(cfg.hidden_size),
    "efficientnet_lite0": lambda cfg: EfficientNetLite0Tower(resolve_path(cfg.path)),
    "clip": lambda cfg: ClipTower(resolve_path(cfg.path), cfg.image_size),
}


def build_vision_tower(cfg: VisionConfig) -> VisionTower:
    if cfg.tower not in VISION_BUILDERS:
        raise ValueError(f"unknown vision tower {cfg.tower!r}; valid: {', '.join(VISION_BUILDERS)}")
    return VISION_BUILDERS[cfg.tower](cfg).eval()
