#!/usr/bin/env python3
"""The official baseline's method (baseline/model.py) through the kit's runner: same tasks, same output files.

    python baseline/run.py --input_path tasks.json [--config pocket] [--output_dir DIR] [--set SECTION.FIELD=V]

Writes for_classification_metric.json, for_generative_metric.json, errors.json and run_summary.json like
run.py, so `python -m solution.score` compares it with the solution directly. Exit codes as run.py: 0 done,
1 the model could not be built, 2 unusable tasks file or config.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
KIT_ROOT = Path(__file__).resolve().parent.parent
if str(KIT_ROOT) not in sys.path:
    sys.path.insert(0, str(KIT_ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--input_path", required=True, type=Path, help="the tasks JSON (media paths relative to it)"
    )
    p.add_argument("--output_dir", type=Path, default=Path("output_path_from_job"), help="where outputs go")
    p.add_argument("--config", default="pocket", help="preset name, YAML file or checkpoint folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field after the baseline's own settings (repeatable)")  # fmt: skip
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from baseline.model import baseline_config, build_baseline
    from solution.errors import ConfigError, KitError, TaskFileError
    from solution.runner import format_summary, run_tasks, tune_for_inference

    hf_logging.disable_progress_bar()
    try:
        cfg = baseline_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"baseline: {cfg.name} (vision {cfg.vision.tower}, {cfg.media.num_frames} frames, STC connector, "
          f"llm {cfg.llm.path or cfg.llm.kind})", file=sys.stderr)  # fmt: skip
    try:
        model = tune_for_inference(build_baseline(cfg), cfg)  # attention kernel, dtype on CUDA
    except KitError as exc:
        print(f"error: the baseline could not be built: {exc}", file=sys.stderr)
        return 1
    try:
        result = run_tasks(args.input_path, args.output_dir, cfg, progress=not args.no_progress, model=model)
    except TaskFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
