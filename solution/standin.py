"""Random-init stand-ins for the contest image's weights, for timing the contest preset where /app is absent.

    python -m solution.standin [--out weights/standin]

The contest preset reads CLIP ViT-L/14-336 and Qwen2-0.5B-Instruct from the contest image's /app. This writes
transformers folders with the same architectures (published config sizes, `CONTEST_ARCHITECTURES`) and random
weights, so that a GPU run of the contest preset does the same compute as in the contest image: its timings are
real, its answers meaningless. The tokenizer is the pocket LLM's (`make weights`): the vocabulary differs, the
prompt lengths differ by a few tokens. It prints the `--set` overrides that point the contest preset at them:

    python bench/compare.py --config contest --set vision.path=weights/standin/clip-vit-large-patch14-336 \\
        --set llm.path=weights/standin/Qwen2-0.5B-Instruct --split data/sample --repeat 50 --memory-tasks ''
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from . import KIT_ROOT

DEFAULT_OUT = KIT_ROOT / "weights" / "standin"
TOKENIZER_DIR = KIT_ROOT / "weights" / "smollm2-135m-instruct"
CLIP_NAME, QWEN_NAME = "clip-vit-large-patch14-336", "Qwen2-0.5B-Instruct"

# fmt: off
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
CONTEST_ARCHITECTURES: dict[str, dict[str, Any]] = {
    CLIP_NAME: {  # openai/clip-vit-large-patch14-336
        "vision_config": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14),
        "text_config": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            max_position_embeddings=77),
        "projection_dim": 768,
    },
    QWEN_NAME: dict(  # Qwen/Qwen2-0.5B-Instruct
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}
# fmt: on


def _copy_tokenizer(tokenizer_dir: Path, folder: Path):
    """Copy the tokenizer files into `folder`; returns the tokenizer loaded from there."""
    from transformers import AutoTokenizer

    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, folder / name)
    return AutoTokenizer.from_pretrained(folder)


def write_standins(
    out: Path = DEFAULT_OUT,
    tokenizer_dir: Path = TOKENIZER_DIR,
    architectures: Mapping[str, Mapping[str, Any]] = CONTEST_ARCHITECTURES,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the random-init CLIP and Qwen2 folders under `out` (tests pass smaller `architectures`)."""
    from transformers import CLIPConfig, CLIPModel, Qwen2Config, Qwen2ForCausalLM

    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer.json; run `make weights` first")
    folders = {}
    for name in (CLIP_NAME, QWEN_NAME):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        tokenizer = _copy_tokenizer(tokenizer_dir, folder)
        sizes = dict(architectures[name])
        torch.manual_seed(seed)
        if name == CLIP_NAME:
            vocab = {"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id}
            text = {**sizes.pop("text_config"), **vocab}
            model = CLIPModel(CLIPConfig(text_config=text, **sizes))
        else:
            # every token id must have a row
            sizes["vocab_size"] = max(sizes.get("vocab_size", 0), len(tokenizer))
            model = Qwen2ForCausalLM(Qwen2Config(**sizes)).to(torch.bfloat16)
            model.config.dtype = "bfloat16"
        model.save_pretrained(folder)
        folders[name] = folder
    return folders


def overrides(folders: Mapping[str, Path]) -> list[str]:
    """The contest preset's --set overrides that use the stand-ins (paths inside the kit relative to it)."""

    def shown(path: Path) -> Path:
        return path.resolve().relative_to(KIT_ROOT) if path.resolve().is_relative_to(KIT_ROOT) else path

    return [f"vision.path={shown(folders[CLIP_NAME])}", f"llm.path={shown(folders[QWEN_NAME])}"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR, help="a transformers tokenizer folder")
    args = p.parse_args(argv)
    try:
        folders = write_standins(args.out, args.tokenizer)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(" ".join(f"--set {o}" for o in overrides(folders)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
