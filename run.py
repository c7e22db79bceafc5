#!/usr/bin/env python3
"""Contest entry point, run from the solution root: `python run.py --input_path tasks.json`.

Writes output_path_from_job/for_classification_metric.json and for_generative_metric.json (plus errors.json
and run_summary.json). Exit codes: 0 done (every task answered), 1 the model could not be built (every task got
its fallback answer, see errors.json), 2 unusable tasks file or config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network in the contest: never try the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

KIT_ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = "pocket"
DEFAULT_CONFIG_FILE = KIT_ROOT / "default_config"
"""One line: the preset name, or the YAML file / checkpoint folder (relative to the kit root), that --config
defaults to. Only submission ZIPs carry it (`python -m solution.submission build` writes it); the repository has
none and defaults to pocket."""
VENDOR_DIR = KIT_ROOT / "vendor"
"""Libraries shipped inside a submission ZIP (wheels unpacked by the builder): importable before site-packages."""
if VENDOR_DIR.is_dir():
    sys.path.insert(1, str(VENDOR_DIR))


def default_config() -> str:
    """The --config default: what the kit root's default_config file names, else DEFAULT_CONFIG."""
    value = DEFAULT_CONFIG_FILE.read_text(encoding="utf-8").strip() if DEFAULT_CONFIG_FILE.is_file() else ""
    if not value:
        return DEFAULT_CONFIG
    return str(KIT_ROOT / value) if (KIT_ROOT / value).exists() else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--input_path", required=True, type=Path, help="the tasks JSON (media paths relative to it)"
    )
    p.add_argument("--output_dir", type=Path, default=Path("output_path_from_job"), help="where outputs go")
    p.add_argument("--config", default=default_config(), help="preset name, YAML file or checkpoint folder")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set fusion.depth=4 (repeatable)",
    )
    p.add_argument("--adapter", help="trained checkpoint folder (shortcut for --config DIR)")
    p.add_argument("--keying", choices=["task_id", "position"], help="output keys (default: the config's)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--time_budget", type=float, metavar="SECONDS",
                   help="wall-clock budget of the whole run; the run steps down to cheaper settings to keep it "
                        "(default: the config's runtime.time_budget_s, 3.5 h less 10 min)")  # fmt: skip
    p.add_argument("--no_resume", action="store_true",
                   help="ignore the output folder's journal.jsonl and answer every task afresh")  # fmt: skip
    p.add_argument("--media_root", action="append", default=[], type=Path, metavar="DIR",
                   help="a folder media may be read from besides the tasks file's folder (repeatable)")  # fmt: skip
    p.add_argument("--allow_any_media_path", action="store_true",
                   help="read media wherever the records point (../, absolute paths, symlinks out)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from solution.config import load_config
    from solution.errors import ConfigError, KitError, TaskFileError
    from solution.runner import format_summary, run_tasks

    hf_logging.disable_progress_bar()  # one progress bar: the tasks'
    overrides = list(args.overrides) + ([f"runtime.keying={args.keying}"] if args.keying else [])
    overrides += [f"runtime.time_budget_s={args.time_budget}"] if args.time_budget is not None else []
    overrides += ["runtime.resume=false"] if args.no_resume else []
    overrides += ["runtime.allow_any_media_path=true"] if args.allow_any_media_path else []
    if args.media_root:
        overrides.append(f"runtime.media_roots={json.dumps([str(p.resolve()) for p in args.media_root])}")
    try:
        cfg = load_config(args.adapter or args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"config: {cfg.name} (vision {cfg.vision.tower}, audio {cfg.audio.encoder}, fusion {cfg.fusion.mode}, "
          f"llm {cfg.llm.path or cfg.llm.kind})", file=sys.stderr)  # fmt: skip
    try:
        result = run_tasks(args.input_path, args.output_dir, cfg, progress=not args.no_progress)
    except TaskFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KitError as exc:
        print(
            f"error: the model could not be built, every task got its fallback answer: {exc}", file=sys.stderr
        )
        return 1
    print(format_summary(result, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
