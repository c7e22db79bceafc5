"""Encoders on tiny random-init weights: frame preprocessing, token pooling with timestamps, audio tokens."""

import numpy as np
import pytest
import torch

from solution.config import load_config
from solution.encoders.audio import FRAMES_PER_SECOND, build_audio_encoder, pool_audio_frames
from solution.encoders.vision import build_vision_tower, pool_video_tokens, preprocess_frames, top_tags
from solution.media.audio import SAMPLE_RATE


def test_preprocess_resizes_crops_and_normalises():
    pixels = np.zeros((3, 90, 160, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red
    x = preprocess_frames(pixels, 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 3, 64, 64)
    assert torch.allclose(x[:, 0], torch.ones(1)) and torch.allclose(x[:, 1], -torch.ones(1))


def test_pool_video_tokens_counts_and_times():
    grid = torch.arange(5 * 2 * 4 * 4, dtype=torch.float32).view(5, 2, 4, 4)  # (T=5, D=2, 4, 4)
    times = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5])
    tokens, token_times = pool_video_tokens(grid, times, spatial_tokens=4, temporal_stride=2)
    assert tokens.shape == (3 * 4, 2)  # ceil(5 / 2) groups x 4 spatial tokens
    assert token_times.tolist() == [1.0] * 4 + [3.0] * 4 + [4.5] * 4  # last group repeats the last frame
    one, _ = pool_video_tokens(grid, times, spatial_tokens=1, temporal_stride=1)
    assert torch.allclose(one, grid.mean((2, 3)))


def test_pool_audio_frames_rate_and_cap():
    frames = torch.randn(250, 8)  # 5 s at 50 frames/s
    tokens, times = pool_audio_frames(frames, tokens_per_second=2, max_tokens=64)
    assert tokens.shape == (10, 8)
    assert torch.allclose(times, torch.arange(10) * 0.5 + 0.25)
    assert torch.allclose(tokens[0], frames[:25].mean(0))
    capped, capped_times = pool_audio_frames(frames, tokens_per_second=2, max_tokens=4)
    assert capped.shape[0] <= 4 and capped_times[-1] <= 5.0


def test_top_tags_orders_by_mean_probability():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 4.0, 6.0]])
    assert top_tags(logits, ["a", "b", "c"], 2) == ["b", "c"]
    assert top_tags(logits, [], 2) == [] and top_tags(logits, ["a", "b", "c"], 0) == []


def test_tiny_towers_shapes():
    cfg = load_config("tiny")
    tower = build_vision_tower(cfg.vision)
    grid, labels = tower(torch.randn(4, 3, 64, 64))
    assert grid.shape == (4, cfg.vision.hidden_size, 4, 4) and labels is None
    audio = build_audio_encoder(cfg.audio)
    wave = np.random.default_rng(0).standard_normal(int(3.2 * SAMPLE_RATE)).astype(np.float32) * 0.1
    tokens, times, transcript = audio(wave)
    frames = int(np.ceil(3.2 * FRAMES_PER_SECOND))
    assert tokens.shape == (int(np.ceil(frames / 25)), cfg.audio.hidden_size)
    assert transcript == "" and times[-1] <= 3.2


def test_long_audio_is_encoded_in_30s_windows():
    cfg = load_config("tiny", ["audio.max_tokens=200"])
    audio = build_audio_encoder(cfg.audio)
    wave = np.zeros(int(65 * SAMPLE_RATE), dtype=np.float32)
    tokens, times, _ = audio(wave)
    assert tokens.shape[0] == 130  # 65 s at 2 tokens/s: all three windows kept, padding dropped
    assert abs(times[-1].item() - 64.75) < 1e-4


@pytest.mark.parametrize("name", ["none"])
def test_no_audio_encoder(name):
    assert build_audio_encoder(load_config("tiny", [f"audio.encoder={name}"]).audio) is None
