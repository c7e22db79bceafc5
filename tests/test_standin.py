"""solution/standin.py: random-init stand-ins for the contest image's weights run the contest preset end to end
(at test sizes here; `python -m solution.standin` writes the real architecture sizes for GPU timings)."""

from pathlib import Path

import pytest

from solution import standin
from solution.config import load_config
from solution.runner import run_tasks

# fmt: off
SMALL = {
    standin.CLIP_NAME: {
        "vision_config": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14),
        "text_config": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=77),
        "projection_dim": 16,
    },
    standin.QWEN_NAME: dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            num_key_value_heads=1, vocab_size=100, tie_word_embeddings=True),
}
# fmt: on


def test_published_sizes_are_the_contest_models():
    clip, qwen = (
        standin.CONTEST_ARCHITECTURES[standin.CLIP_NAME],
        standin.CONTEST_ARCHITECTURES[standin.QWEN_NAME],
    )
    assert (clip["vision_config"]["image_size"], clip["vision_config"]["patch_size"]) == (336, 14)
    assert clip["vision_config"]["num_hidden_layers"] == 24 and clip["vision_config"]["hidden_size"] == 1024
    assert (qwen["hidden_size"], qwen["num_hidden_layers"], qwen["vocab_size"]) == (896, 24, 151936)
    assert load_config("contest").vision.image_size == 336  # the preset's crop matches the stand-in's


@pytest.mark.real_weights
def test_standins_answer_every_task_with_the_contest_preset(sample_tasks: Path, tmp_path: Path):
    if not (standin.TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip(
            "pocket weights not prepared (make test prepares them first): the stand-ins use its tokenizer"
        )
    folders = standin.write_standins(tmp_path / "standin", architectures=SMALL)
    from transformers import AutoConfig

    assert (
        AutoConfig.from_pretrained(folders[standin.QWEN_NAME]).vocab_size >= 49152
    )  # the tokenizer's ids fit
    cfg = load_config("contest", [*standin.overrides(folders), "vision.image_size=28", "runtime.device=cpu",
                                  "runtime.threads=1", "generation.max_new_tokens=4"])  # fmt: skip
    result = run_tasks(sample_tasks, tmp_path / "out", cfg, progress=False)
    assert [t["source"] for t in result.tasks] == ["model"] * 6, result.errors
