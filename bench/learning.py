"""Learning proof: does training teach the model to use video and audio together?

    python bench/learning.py [--config pocket] [--steps 220] [--batch_size 4] [--eval_every 0]
        [--variants untrained,trimodal,concat,video_only,audio_only] [--sizes 640,40,70] [--seed 0]
        [--set SECTION.FIELD=VALUE ...] [--out bench/results/learning] [--json FILE]

Generates the synthetic benchmark (`solution.synthetic`: train, dev and heldout splits, every sound in its own
.mp3 so that the video can be removed without the sound), trains each variant with `solution.train` on the same
data, steps and seed, and scores each variant's last checkpoint (with `--eval_every N`: its best by dev score) on the
heldout split, whose attribute combinations never occur in training. The variants:

| variant | what the model gets |
|---|---|
| untrained | the config as it is, no training (the zero-shot floor) |
| trimodal | fusion.mode=coattn: video, audio and text attend to each other |
| concat | fusion.mode=concat: the same streams, no interaction (VideoLLaMA2-AV style) |
| video_only | audio.encoder=none: no audio tokens |
| audio_only | tasks without their video (the splits are rewritten with video "") |

Every variant gets BENCH_OVERRIDES (no transcript or visual tags, finer audio and video tokens for 3-second clips,
the beeps listed as sound events, each with where the square was at its moment, and the one the question names after
them, the question before the media, a short system prompt without the option list, no LoRA dropout) and
BENCH_TRAIN_OVERRIDES (LoRA lr 1e-3, the questions that need both modalities twice per epoch), then the user's
--set; each is scored with SCORE_OVERRIDES (float32 LLM weights). Prints the feature cache's speed-up (seconds per
example to decode and encode vs to read the cache) and a markdown table of accuracy per category (video / audio /
both questions) and caption METEOR on heldout (and, with --eval_every, dev accuracy and score); the claim to check
is trimodal > concat and trimodal > each single modality on heldout 'both' questions. On the pocket preset (2 CPU
threads) a step of 4 examples takes ~2-2.5 s (bf16 LLM weights, ~120-token prompts), so a trained variant takes
about 8-13 minutes (220 steps and the held-out scoring), the whole table about 41 minutes, feature extraction
included (cached under .cache/features and shared by every variant); `--eval_every 125` adds a dev evaluation
(~40 s) every 125 steps per variant, for the best-checkpoint choice. `--config tiny` runs the whole pipeline in under a
minute (the tiny random LLM cannot learn much: that run only shows the script works). A finished variant is skipped
when the script is run again with the same arguments (its run folder is resumed).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solution import KIT_ROOT  # noqa: E402
from solution.config import load_config  # noqa: E402
from solution.errors import KitError  # noqa: E402
from solution.feature_cache import DEFAULT_CACHE_DIR, FeatureCache  # noqa: E402
from solution.metrics import METEOR_CONTEST  # noqa: E402
from solution.model import build_model  # noqa: E402
from solution.splits import load_split, write_split  # noqa: E402
from solution.synthetic import make_synthetic_split  # noqa: E402
from solution.train import DEV_METRICS_FILE, Evaluator, load_examples, split_overrides, train, train_config  # noqa: E402

OUT_DIR = KIT_ROOT / "bench" / "results" / "learning"
SPLITS = ("train", "dev", "heldout")
CATEGORIES = ("video", "audio", "both")


@dataclass(frozen=True)
class Variant:
    overrides: tuple[str, ...] = ()
    strip_video: bool = False  # train and evaluate on tasks without their video
    trained: bool = True


VARIANTS = {
    "untrained": Variant(("fusion.mode=coattn",), trained=False),
    "trimodal": Variant(("fusion.mode=coattn",)),
    "concat": Variant(("fusion.mode=concat",)),
    "video_only": Variant(("fusion.mode=coattn", "audio.encoder=none")),
    "audio_only": Variant(("fusion.mode=coattn",), strip_video=True),
}
BENCH_OVERRIDES = (
    "audio.transcribe=false",  # the clips hold beeps, no speech (and without a transcript the audio window fits)
    "vision.num_tags=0",  # ImageNet tags of a coloured square are noise
    "audio.tokens_per_second=5",  # a beep lasts 0.15 s: 0.2 s tokens place it in a 0.75 s colour segment
    "vision.temporal_stride=1",  # a token per frame and quadrant: 8 frames over the 3 s clip
    "prompt.system=Answer questions about the video and its sound.",  # a short prompt: each step reads less
    "prompt.list_options=false",  # options scored, not listed: 100 prompt tokens instead of 138
    "llm.lora_dropout=0",  # its masks took ~10% of a CPU step; a short run needs no such regulariser
    "llm.dtype=bfloat16",  # frozen LLM weights in bf16 (LoRA, fusion, projector float32): the fastest CPU steps
    "audio.max_events=8",  # the beeps listed by ordinal: "the second beep" and "how many" read off the list
    "prompt.question_first=true",  # each sound event read knowing which beep is asked
    "fusion.event_pointer=true",  # and the event the question names added after the list: "The asked sound: ..."
    "fusion.event_place=true",  # each event with where the frame at its moment has the square
)
"""Applied to every variant before the user's --set: the synthetic clips' needs, and shorter prompts."""
BENCH_TRAIN_OVERRIDES = (
    "lr=1e-3",  # a short run: LoRA at 2e-4 (the trainer's default) barely moved in 100 steps
    "group_by=kind",  # each epoch visits the questions that need both modalities twice: the hardest kinds
    "repeats={colour_at_beep: 2, position_at_beep: 2}",
)
"""Applied to every trained variant before the user's --set train.X (the same data and steps for each)."""
SCORE_OVERRIDES = ("llm.dtype=float32",)
"""Applied to each variant's model for scoring: frozen LLM weights in bf16 make the fastest CPU training steps, in
float32 (the pocket preset's own setting) the fastest CPU inference: the held-out split in ~50 s instead of ~75 s."""


def make_splits(root: Path, sizes: Sequence[int], seed: int, clip_seconds: float) -> dict[str, Path]:
    """The three synthetic splits under `root` (made once; an existing complete split is reused)."""
    paths = {}
    for name, size in zip(SPLITS, sizes, strict=True):
        folder = root / f"{name}-{size}-seed{seed}"
        if not (folder / "tasks.json").is_file():  # tasks.json is written last: present = complete
            make_synthetic_split(folder, seed=seed, n_tasks=size, clip_seconds=clip_seconds, split=name,
                                 sound_in_video_share=0.0)  # fmt: skip
        paths[name] = folder
    return paths


def without_video(split_dir: Path) -> Path:
    """A copy of the split whose tasks have no video (their .mp3 copied along)."""
    out = split_dir.with_name(split_dir.name + "-no-video")
    if not (out / "tasks.json").is_file():
        split = load_split(split_dir)
        write_split([{**record, "video": ""} for record in split.records], split.root, out, media_mode="copy")
    return out


def run_variant(
    name: str, variant: Variant, args: argparse.Namespace, splits: dict[str, Path]
) -> dict[str, Any]:
    """Train one variant (unless untrained) and score its best model on the heldout and dev splits."""
    kit_overrides, train_overrides = split_overrides(args.overrides)
    overrides = [*BENCH_OVERRIDES, *kit_overrides, *variant.overrides, f"runtime.seed={args.seed}"]
    cfg = load_config(args.config, overrides)
    data = {k: without_video(v) if variant.strip_video else v for k, v in splits.items()}
    started, out = time.perf_counter(), args.out / name
    row: dict[str, Any] = {
        "variant": name,
        "overrides": list(variant.overrides),
        "no_video": variant.strip_video,
    }
    if variant.trained:
        tcfg = train_config([*BENCH_TRAIN_OVERRIDES, *train_overrides], steps=args.steps, batch_size=args.batch_size,
                            eval_every=args.eval_every or args.steps)  # fmt: skip
        result = train(cfg, tcfg, data["train"], out, data["dev"] if args.eval_every else None, resume=True,
                       cache_dir=DEFAULT_CACHE_DIR, progress=not args.no_progress)  # fmt: skip
        row.update(
            best_step=result.best_step, final_loss=result.records[-1]["loss"] if result.records else None
        )
        del result
        gc.collect()
        # the dev metrics as scored when it was saved; {} when trained without dev
        dev = json.loads((out / "best" / DEV_METRICS_FILE).read_text())
        row["dev"] = {k: v for k, v in dev.items() if k != "step"} or None
    source, base = (out / "best", []) if variant.trained else (args.config, overrides)
    cfg = load_config(source, [*base, *SCORE_OVERRIDES])
    model = build_model(cfg)
    for split in ["heldout", "dev"] if args.eval_every and not variant.trained else ["heldout"]:
        row[split] = Evaluator(load_split(data[split]), cfg)(model)
    row["seconds"] = round(time.perf_counter() - started, 1)
    del model
    gc.collect()
    return row


def cache_speedup(args: argparse.Namespace, split_dir: Path, n: int = 24) -> dict[str, float]:
    """Seconds per example to get the encoder features of `n` training tasks: decoded and encoded (the first
    epoch), then read back from the disk cache (every later epoch; a resumed or repeated run), and the ratio."""
    kit_overrides, _ = split_overrides(args.overrides)
    cfg = load_config(args.config, [*BENCH_OVERRIDES, *kit_overrides, f"runtime.seed={args.seed}"])
    model = build_model(cfg)
    tasks = load_examples(load_split(split_dir))[:n]
    with tempfile.TemporaryDirectory() as folder:
        seconds = []
        for _ in range(2):  # a cold cache, then a fresh FeatureCache over the entries just written
            cache, start = FeatureCache(model, cfg, Path(folder)), time.perf_counter()
            for example in tasks:
                cache.get(example.task)
            seconds.append((time.perf_counter() - start) / len(tasks))
        assert cache.stats()["disk_hits"] == len(tasks), cache.stats()
    del model
    gc.collect()
    return {"encode_s_per_example": round(seconds[0], 4), "cached_s_per_example": round(seconds[1], 5),
            "speedup": round(seconds[0] / seconds[1], 1)}  # fmt: skip


def format_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    head = ["variant", *(f"heldout {c}" for c in CATEGORIES), "heldout acc", "heldout METEOR", "dev acc",
            "dev score", "best step", "minutes"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        by_category = row["heldout"].get("accuracy_by_category", {})
        cells = [row["variant"], *(cell(by_category.get(c)) for c in CATEGORIES), cell(row["heldout"]["accuracy"]),
                 cell(row["heldout"][METEOR_CONTEST]), cell((row.get("dev") or {}).get("accuracy")),
                 cell((row.get("dev") or {}).get("score")),
                 str(row.get("best_step", "-")), f"{row['seconds'] / 60:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pocket", help="preset, YAML file or checkpoint folder")
    p.add_argument("--steps", type=int, default=220)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--eval_every", type=int, default=0,
                   help="evaluate on dev every N steps and score the best checkpoint; 0: no dev, the last step")  # fmt: skip
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}"
    )
    p.add_argument("--sizes", default="640,40,70", help="tasks in the train, dev and heldout splits")
    p.add_argument("--clip_seconds", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config override for every variant (train.FIELD for training fields)")  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT_DIR, help="variant runs and results.json go here")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--no_progress", action="store_true")
    args = p.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    sizes = [int(s) for s in args.sizes.split(",")]
    if unknown or len(sizes) != 3:
        p.error(
            f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}"
            if unknown
            else "--sizes: three numbers"
        )
    args.out = args.out / f"{Path(str(args.config)).stem}-seed{args.seed}"
    try:
        started = time.perf_counter()
        splits = make_splits(args.out / "data", sizes, args.seed, args.clip_seconds)
        cache = cache_speedup(args, splits["train"])
        print(f"feature cache: {cache['encode_s_per_example']} s/example decoded and encoded, "
              f"{cache['cached_s_per_example']} s from the disk cache: {cache['speedup']}x", file=sys.stderr)  # fmt: skip
        rows = []
        for name in names:
            rows.append(run_variant(name, VARIANTS[name], args, splits))
            print(f"{name}: heldout {rows[-1]['heldout'].get('accuracy_by_category')} ({rows[-1]['seconds']} s)",
                  file=sys.stderr)  # fmt: skip
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    minutes = round((time.perf_counter() - started) / 60, 1)
    print(format_table(rows))
    print(
        f"\nfeature cache: {cache['speedup']}x faster per example than decoding and encoding "
        f"({cache['encode_s_per_example']} vs {cache['cached_s_per_example']} s); whole table: {minutes} min"
    )
    results = {"config": str(args.config), "steps": args.steps, "batch_size": args.batch_size, "sizes": sizes,
               "seed": args.seed, "bench_overrides": [*BENCH_OVERRIDES, *(f"train.{o}" for o in BENCH_TRAIN_OVERRIDES)],
               "score_overrides": list(SCORE_OVERRIDES),
               "overrides": args.overrides,
               "feature_cache": cache, "minutes": minutes, "rows": rows}  # fmt: skip
    for path in (args.out / "results.json", args.json):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
