"""Pipeline benchmark: per-stage timings, prefix-cached vs naive option scoring, long-video decode cost.

    python bench/pipeline.py [--split data/sample] [--config pocket] [--set k=v ...] [--json FILE] [--repeat N]

Prints three markdown tables (and with --json writes the numbers). Every ratio comes from this one run; machines
are noisy, so nothing here is asserted as a timing.
  1. Model load seconds and mean seconds per task per stage (decode / encoders / fusion / LLM) and per task type,
     from the Runner's StageTimer: one warm-up pass over the split, then `--repeat` measured passes.
  2. heads.score_options (prompt once, KV cache shared by the options) vs heads.score_options_naive (one full
     forward per option) on the split's real QA prompts: speed-up, max |score difference|, same pick.
  3. read_frames on a synthetic 10-minute vs 10-second 640x360 h264 clip (GOP 250), cached in .cache/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import av
import torch
import transformers

from solution import KIT_ROOT, heads, synth
from solution.config import KitConfig, load_config
from solution.errors import KitError
from solution.media.video import read_frames
from solution.model import TriModalModel, build_model
from solution.prompt import option_texts
from solution.runner import STAGES, Runner, RunResult
from solution.sample_split import make_sample_split
from solution.tasks import load_task_file, parse_task

CACHE_DIR = KIT_ROOT / ".cache" / "bench"
CLIP_SIZE = (640, 360)
CLIP_FPS = 25
CLIP_GOP = 250  # 10 s at 25 fps: a keyframe interval common in real files
SHORT_SECONDS, LONG_SECONDS = 10, 600
DECODE_READS = 5
SCORE_READS = 3
DECODE_TARGET = 2.0


def interleaved_medians(reads: int, calls: Sequence[Callable[[], Any]]) -> list[float]:
    """Median wall-clock seconds of each call, timed in turn (A B A B ...) so that load spikes hit all alike."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(reads):
        for call, record in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats get 4 significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


# -- 1. per-stage timings ---------------------------------------------------------------------------------------


def bench_pipeline(
    model: TriModalModel, cfg: KitConfig, records: list, root: Path, repeat: int
) -> dict[str, Any]:
    """Warm-up pass, then `repeat` measured passes with fresh Runners; their tasks and stage totals merged."""
    Runner(model, cfg).run(records, root, progress=False)
    merged = RunResult()
    for _ in range(repeat):
        result = Runner(model, cfg).run(records, root, progress=False)
        merged.tasks += result.tasks
        merged.errors += result.errors
        for stage, seconds in result.stage_seconds.items():
            merged.stage_seconds[stage] = merged.stage_seconds.get(stage, 0.0) + seconds
    summary = merged.summary()
    by_type: dict[str, list[float]] = {}
    for task in merged.tasks:
        by_type.setdefault(str(task["task_type"]), []).append(task["seconds"])
    summary["seconds_by_type"] = {
        k: {"tasks": len(v), "mean": sum(v) / len(v)} for k, v in sorted(by_type.items())
    }
    summary["problems"] = sorted({f"{e['task_id']} {e['stage']}: {e['reason']}" for e in merged.errors})
    summary["repeat"] = repeat
    return summary


def report_pipeline(s: dict[str, Any], load_seconds: float) -> str:
    """Part 1 as text: the load time, then a table per stage and one per task type."""
    mean = s["mean_seconds_per_task"]
    stages = s["stage_seconds_per_task"]
    other = mean - sum(stages.values())
    rows = [(name, stages[name], f"{stages[name] / mean:.0%}") for name in STAGES]
    rows += [("other (parsing, bookkeeping)", other, f"{other / mean:.0%}"), ("**total**", mean, "100%")]
    types = [(k, v["tasks"], v["mean"]) for k, v in s["seconds_by_type"].items()]
    lines = [
        f"Model load: {load_seconds:.2f} s. Measured pass(es): {s['repeat']} x {s['tasks'] // s['repeat']} tasks "
        f"after one warm-up pass; answered by {s['by_source']}.",
        "",
        table(["stage", "mean s/task", "share"], rows),
        "",
        table(["task type", "tasks measured", "mean s/task"], types),
    ]
    if s["problems"]:
        lines += ["", "Problems logged (timings of fallback tasks are not model timings):"]
        lines += [f"- {p}" for p in s["problems"]]
    return "\n".join(lines)


# -- 2. prefix-cached vs naive option scoring ------------------------------------------------------------------


def bench_scoring(model: TriModalModel, cfg: KitConfig, records: list, root: Path) -> dict[str, Any]:
    """Both scorers on the same prefix and option ids of each QA task, under model.autocast()."""
    runner = Runner(model, cfg)  # only for its media loading
    rows = []
    for index, record in enumerate(records):
        task = parse_task(record, index, root)
        if task.task_type != "qa":
            continue
        frames, wave, _ = runner.load_media(task)
        with torch.no_grad():
            prefix = model.prefix_embeds(task, model.encode(frames, wave))
        option_ids = [model.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(task)]
        with model.autocast():
            cached = heads.score_options(model.llm, prefix, option_ids)  # also the warm-up
            naive = heads.score_options_naive(model.llm, prefix, option_ids)
            cached_s, naive_s = interleaved_medians(
                SCORE_READS,
                [
                    partial(scorer, model.llm, prefix, option_ids)
                    for scorer in (heads.score_options, heads.score_options_naive)
                ],
            )
        rows.append({
            "task_id": task.key,
            "prefix_tokens": prefix.shape[1],
            "options": len(option_ids),
            "option_tokens_max": max(len(ids) for ids in option_ids),
            "cached_s": cached_s,
            "naive_s": naive_s,
            "speedup": naive_s / cached_s,
            "max_abs_diff": float((cached - naive).abs().max()),
            "same_pick": int(cached.argmax()) == int(naive.argmax()),
        })  # fmt: skip
    total_cached, total_naive = sum(r["cached_s"] for r in rows), sum(r["naive_s"] for r in rows)
    return {
        "tasks": rows,
        "cached_s": total_cached,
        "naive_s": total_naive,
        "speedup": total_naive / total_cached if rows else None,
        "max_abs_diff": max((r["max_abs_diff"] for r in rows), default=None),
        "same_pick_all": all(r["same_pick"] for r in rows),
        "autocast_bf16": model.device.type == "cpu" and cfg.runtime.cpu_bf16_autocast,
        "reads": SCORE_READS,
    }


def report_scoring(s: dict[str, Any]) -> str:
    """Part 2 as text: one row per QA task and a total row."""
    keys = ["task_id", "prefix_tokens", "options", "option_tokens_max", "cached_s", "naive_s", "speedup"]
    rows = [[r[k] for k in keys] + [f"{r['max_abs_diff']:.2e}", r["same_pick"]] for r in s["tasks"]]
    if s["tasks"]:
        rows.append(["**all**", "", "", "", s["cached_s"], s["naive_s"], s["speedup"], f"{s['max_abs_diff']:.2e}",
                     s["same_pick_all"]])  # fmt: skip
    headers = ["task", "prefix tok", "options", "max option tok", "cached s", "naive s", "speed-up",
               "max abs diff", "same pick"]  # fmt: skip
    return "\n".join([
        f"Median of {s['reads']} calls each, same prefix and option ids; bf16 autocast: {s['autocast_bf16']}.",
        "",
        table(headers, rows),
    ])  # fmt: skip


# -- 3. long vs short video decode ------------------------------------------------------------------------------


def repeat_clip(short: Path, long: Path, copies: int) -> None:
    """Write `copies` back-to-back copies of `short`'s video packets into `long` (a remux: no re-encoding).

    `short` is exactly one GOP long, so the result has a keyframe every CLIP_GOP frames, like a real encode.
    """
    with av.open(str(short)) as source, av.open(str(long), mode="w") as target:
        stream = source.streams.video[0]
        out = target.add_stream_from_template(stream)
        packets = [p for p in source.demux(stream) if p.size]
        span = max(p.pts + p.duration for p in packets) - min(p.pts for p in packets)
        for copy in range(copies):
            for p in packets:
                packet = av.Packet(bytes(p))
                packet.pts, packet.dts = p.pts + copy * span, p.dts + copy * span
                packet.duration, packet.time_base, packet.is_keyframe = p.duration, p.time_base, p.is_keyframe
                packet.stream = out
                target.mux(packet)


def make_clips(cache: Path) -> dict[str, Any]:
    """The 10-second and 10-minute clips in `cache` (made once; clips.json, written last, marks them complete)."""
    meta_path = cache / "clips.json"
    if meta_path.is_file():
        return {**json.loads(meta_path.read_text()), "cached": True}
    cache.mkdir(parents=True, exist_ok=True)
    short, long = cache / "clip_10s_640x360.mp4", cache / "clip_10min_640x360.mp4"
    start = time.perf_counter()
    frames = synth.moving_square((220, 30, 30), size=CLIP_SIZE, fps=CLIP_FPS, seconds=SHORT_SECONDS)
    synth.write_video(short, frames, CLIP_FPS, gop=CLIP_GOP)
    repeat_clip(short, long, LONG_SECONDS // SHORT_SECONDS)
    meta = {"short": str(short), "long": str(long), "generation_s": time.perf_counter() - start}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "cached": False}


def bench_decode(cfg: KitConfig) -> dict[str, Any]:
    """Median seconds of read_frames (the preset's num_frames and max_side) on each clip, after one warm read."""
    clips = make_clips(CACHE_DIR)
    media = cfg.media
    result: dict[str, Any] = {"clips": clips, "num_frames": media.num_frames, "max_side": media.max_side}
    paths = [Path(clips[name]) for name in ("short", "long")]
    reads = [
        partial(read_frames, path, num_frames=media.num_frames, max_side=media.max_side) for path in paths
    ]
    first = [read() for read in reads]  # warm-up (file cache)
    medians = interleaved_medians(DECODE_READS, reads)
    for name, path, frames, seconds in zip(("short", "long"), paths, first, medians, strict=True):
        result[name] = {"seconds": seconds, "duration": frames.duration, "shape": list(frames.pixels.shape),
                        "mib": path.stat().st_size / 2**20}  # fmt: skip
    result["ratio"] = result["long"]["seconds"] / result["short"]["seconds"]
    result["reads"] = DECODE_READS
    return result


def report_decode(d: dict[str, Any]) -> str:
    """Part 3 as text: one row per clip and the long/short ratio."""
    clips = d["clips"]
    made = "from the cache, generated" if clips["cached"] else "generated now"
    rows = [(f"{d[n]['duration']:.0f} s", f"{d[n]['mib']:.2f}", "x".join(map(str, d[n]["shape"])), d[n]["seconds"])
            for n in ("short", "long")]  # fmt: skip
    verdict = "within" if d["ratio"] <= DECODE_TARGET else "ABOVE"
    return "\n".join([
        f"read_frames(num_frames={d['num_frames']}, max_side={d['max_side']}), median of {d['reads']} reads; "
        f"640x360 h264 {CLIP_FPS} fps, GOP {CLIP_GOP}; clips {made} in {clips['generation_s']:.1f} s "
        f"({Path(clips['long']).parent}).",
        "",
        table(["clip", "MiB", "frames out", "median s"], rows),
        "",
        f"10 min / 10 s decode time: **{d['ratio']:.2f}x** ({verdict} the {DECODE_TARGET:g}x target).",
    ])  # fmt: skip


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three parts, print their tables; 1 when the config, split or model cannot be loaded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("data/sample"), help="folder with tasks.json")
    parser.add_argument("--config", default="pocket", help="preset name, YAML file or checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measured passes over the split (after a warm-up)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    transformers.logging.set_verbosity_error()  # Whisper's generate() warns on every call
    transformers.logging.disable_progress_bar()
    try:
        cfg = load_config(args.config, args.overrides)
        if not (args.split / "tasks.json").is_file():
            print(f"{args.split}: no tasks.json, writing the sample split there", file=sys.stderr)
            make_sample_split(args.split)
        tasks_path = args.split / "tasks.json"
        records = load_task_file(tasks_path)
        start = time.perf_counter()
        model = build_model(cfg)
        load_seconds = time.perf_counter() - start
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    root = tasks_path.parent
    print(f"# Pipeline benchmark: config {cfg.name!r} on {tasks_path} ({len(records)} tasks)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {model.device}, "
          f"cpu_bf16_autocast={cfg.runtime.cpu_bf16_autocast}; load average at start {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (other processes make timings noisy)\n")  # fmt: skip
    pipeline = bench_pipeline(model, cfg, records, root, args.repeat)
    pipeline["model_load_seconds"] = load_seconds
    print("## 1. Seconds per task by stage\n\n" + report_pipeline(pipeline, load_seconds) + "\n")
    scoring = bench_scoring(model, cfg, records, root)
    print("## 2. Option scoring: prefix-cached vs naive\n\n" + report_scoring(scoring) + "\n")
    decode = bench_decode(cfg)
    print("## 3. Decode: 10-minute vs 10-second clip\n\n" + report_decode(decode))
    print(f"\nLoad average at end: {os.getloadavg()[0]:.1f}.")
    if torch.get_num_threads() > 1 and os.getloadavg()[0] > (os.cpu_count() or 1) - 0.5:
        print("Other processes were busy: torch's threads wait on each other when a core is taken (calls up to "
              "10x slower were seen on 2 cores); compare with --set runtime.threads=1.")  # fmt: skip

    if args.json:
        document = {
            "config": cfg.name,
            "split": str(args.split),
            "overrides": args.overrides,
            "torch_threads": torch.get_num_threads(),
            "load_average_end": os.getloadavg()[0],
            "pipeline": pipeline,
            "scoring": scoring,
            "decode": decode,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nWrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
