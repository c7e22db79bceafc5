#!/usr/bin/env python3
"""Train the fusion module, the projector and LoRA adapters of the LLM on a labelled split.

    python train_lora.py --config tiny --train data/synth/train --dev data/synth/dev --out runs/tiny --steps 100
    torchrun --nproc_per_node 2 train_lora.py ...        data parallel: gloo on CPU, bf16 mixed precision on GPU
    accelerate launch --multi_gpu --num_processes 2 train_lora.py ...   (on CPU too: `--cpu` starts one process)

Writes OUT/checkpoint-<step>/ (model files + trainer state), OUT/best/ (the best dev evaluation's model: use it as
`run.py --config OUT/best`), OUT/metrics.jsonl and OUT/training.png. `--resume` continues from the latest
checkpoint. Training fields are set with flags or `--set train.FIELD=VALUE` (see solution/train.py TrainConfig);
every other `--set` overrides the model config. Exit codes: 0 trained, 2 unusable config, split or output folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network: never try the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", default="pocket", help="preset name, YAML file or checkpoint folder to start from"
    )
    p.add_argument(
        "--train", required=True, type=Path, help="labelled training split (tasks.json + labels.json)"
    )
    p.add_argument("--dev", type=Path, help="labelled dev split, scored every --eval_every steps")
    p.add_argument("--out", required=True, type=Path, help="output folder (checkpoints, best/, logs)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field (train.FIELD for training fields), e.g. --set fusion.depth=4",
    )
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--batch_size", type=int, help="global batch size (split over the processes)")
    p.add_argument("--lr", type=float, help="peak learning rate of the LoRA adapters")
    p.add_argument("--fusion_lr", type=float, help="peak learning rate of the fusion module and projector")
    p.add_argument("--eval_every", type=int, help="dev evaluation + checkpoint every N steps (0: last only)")
    p.add_argument("--drop_video", type=float, help="probability of dropping an example's video")
    p.add_argument("--drop_audio", type=float, help="probability of dropping an example's audio")
    p.add_argument("--seed", type=int, help="runtime.seed: model initialisation, data order, dropout")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--cache_dir", type=Path, help="encoder feature cache (default .cache/features)")
    p.add_argument("--no_cache", action="store_true", help="keep encoder features in memory only")
    p.add_argument("--stop_after", type=int, help="stop after N steps as a killed process would (testing)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from solution.config import load_config
    from solution.errors import KitError
    from solution.feature_cache import DEFAULT_CACHE_DIR
    from solution.train import split_overrides, train, train_config

    hf_logging.disable_progress_bar()
    kit_overrides, train_overrides = split_overrides(args.overrides)
    if args.seed is not None:
        kit_overrides.append(f"runtime.seed={args.seed}")
    try:
        cfg = load_config(args.config, kit_overrides)
        tcfg = train_config(
            train_overrides, steps=args.steps, batch_size=args.batch_size, lr=args.lr, fusion_lr=args.fusion_lr,
            eval_every=args.eval_every, drop_video=args.drop_video, drop_audio=args.drop_audio,
        )  # fmt: skip
        cache_dir = None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR)
        result = train(cfg, tcfg, args.train, args.out, args.dev, resume=args.resume,
                       stop_after=args.stop_after, cache_dir=cache_dir, progress=not args.no_progress)  # fmt: skip
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.records:
        last = result.records[-1]
        best = (
            f"best step {result.best_step} (dev score {result.best_score})"
            if result.best_score is not None
            else ""
        )
        print(f"trained to step {result.step}: loss {last['loss']:.4f}; {best}".rstrip("; "))
        print(f"encoder features: {result.feature_stats}")
        print(f"outputs in {result.out_dir}/ (best model: {result.out_dir / 'best'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
