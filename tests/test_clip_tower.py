"""The contest preset's vision path: a transformers CLIP or SigLIP folder (tiny random-init ones saved to disk)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from solution.config import load_config
from solution.encoders.vision import build_vision_tower, preprocess_frames
from solution.errors import ConfigError, WeightsError
from solution.llm import tiny_tokenizer


def save_tiny(kind: str, folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    tokenizer = tiny_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)  # fmt: skip
    torch.manual_seed(0)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config={**text, "eos_token_id": tokenizer.eos_token_id},
                                     vision_config=vision, projection_dim=16))  # fmt: skip
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind, n_patches", [("clip", 16), ("siglip", 16)])
def test_clip_like_tower_gives_a_patch_grid_and_zero_shot_tags(tmp_path: Path, kind, n_patches):
    folder = save_tiny(kind, tmp_path / kind)
    cfg = load_config(
        "tiny", ["vision.tower=clip", f"vision.path={folder}", "vision.image_size=32", "vision.num_tags=3"]
    )
    tower = build_vision_tower(cfg.vision)
    pixels = preprocess_frames(np.full((2, 40, 50, 3), 128, dtype=np.uint8), 32, tower.mean, tower.std)
    with torch.no_grad():
        grid, logits = tower(pixels)
    side = int(n_patches**0.5)
    assert grid.shape == (2, 32, side, side)  # class token dropped for CLIP
    assert logits.shape == (2, 1000) and len(tower.labels) == 1000 and torch.isfinite(logits).all()


def test_clip_tower_end_to_end_in_the_model(tmp_path: Path):
    from solution.model import build_model
    from solution.tasks import parse_task

    folder = save_tiny("clip", tmp_path / "clip")
    model = build_model(load_config("tiny", ["vision.tower=clip", f"vision.path={folder}", "vision.image_size=32",
                                             "vision.num_tags=2"]))  # fmt: skip
    from solution.media.video import Frames

    frames = Frames(np.zeros((4, 40, 50, 3), dtype=np.uint8), np.arange(4, dtype=np.float32), 4.0)
    encoded = model.encode(frames, None)
    assert len(encoded.tags) == 2
    task = parse_task({"task_id": 1, "task_type": "captioning", "question": "Describe.", "video": "", "audio": "",
                       "choices": []}, 0, tmp_path)  # fmt: skip
    assert isinstance(model.answer(task, model.prefix_embeds(task, encoded)).caption, str)


def test_clip_tower_errors_name_the_problem(tmp_path: Path):
    folder = save_tiny("clip", tmp_path / "clip")
    with pytest.raises(ConfigError, match="vision.image_size=64 but .* expects 32"):
        build_vision_tower(
            load_config("tiny", ["vision.tower=clip", f"vision.path={folder}", "vision.image_size=64"]).vision
        )
    with pytest.raises(WeightsError, match="config.json"):
        build_vision_tower(
            load_config("tiny", ["vision.tower=clip", f"vision.path={tmp_path / 'none'}"]).vision
        )
