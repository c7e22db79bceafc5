"""Peak memory against the number of tasks: does the run's memory grow with the tasks file?

    python bench/memory.py [--tasks 10,10000] [--config tiny] [--set k=v ...] [--instant] [--json FILE]

For each task count, this script writes a tasks file of text-only tasks (videos and audio "", half QA with 5
options, half captioning); a fresh process builds the model, runs `runner.run_tasks` on it (reading, parsing,
journal, outputs) and reports its peak RSS (resource.getrusage: the most resident memory the process ever
held) before and after the run. Prints a table and the ratios of the largest to the smallest count.
`--instant` replaces the model by one that answers at once, which measures the runner's own memory (records,
answers, journal) in seconds instead of minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KIT_ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def tasks_file(folder: Path, n: int) -> Path:
    records = []
    for i in range(n):
        question = f"What does the person in clip {i} feel when the phone rings?"
        record = {"task_id": i, "task_type": "qa" if i % 2 else "captioning", "question": question,
                  "video": "", "audio": "", "choices": []}  # fmt: skip
        if i % 2:
            record["choices"] = [{"choice_id": j, "choice": f"Option {j} of task {i}"} for j in range(5)]
        records.append(record)
    path = folder / "tasks.json"
    path.write_text(json.dumps(records))
    return path


class InstantModel:
    """Answers at once: the last option, a caption naming the task."""

    def encode(self, frames, wave):
        return None

    def prefix_embeds(self, task, encoded):
        return None

    def answer(self, task, prefix):
        from solution.model import Answer

        if task.task_type == "qa":
            return Answer(choice_id=task.choices[-1].choice_id)
        return Answer(caption=f"Caption of task {task.key}.")


def child(path: Path, config: str, overrides: list[str], instant: bool) -> dict[str, Any]:
    """One measurement in this (fresh) process: build the model, then answer the tasks file at `path`."""
    sys.path.insert(0, str(KIT_ROOT))
    from solution.config import load_config
    from solution.model import build_model
    from solution.runner import run_tasks

    cfg = load_config(config, overrides)
    model = InstantModel() if instant else build_model(cfg)
    before = peak_rss_mib()
    start = time.perf_counter()
    result = run_tasks(path, path.parent / "out", cfg, progress=False, model=model)
    seconds = time.perf_counter() - start
    n = len(result.tasks)
    assert len(result.qa) + len(result.captions) == n, "every task must be answered"
    return {"tasks": n, "file_mib": path.stat().st_size / 2**20, "seconds": seconds,
            "rss_before_run_mib": before, "peak_rss_mib": peak_rss_mib()}  # fmt: skip


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = tasks_file(Path(tmp), n)
        command = [sys.executable, __file__, "--child", str(path), "--config", args.config]
        command += [f"--set={o}" for o in args.overrides] + (["--instant"] if args.instant else [])
        proc = subprocess.run(command, cwd=KIT_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measurement of {n} tasks failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: Sequence[dict[str, Any]], model: str) -> str:
    lines = [
        f"Model: {model}. Peak RSS of a fresh process per row (resource.getrusage ru_maxrss).",
        "",
        "| tasks | tasks file MiB | run s | s/task | peak RSS before run MiB | peak RSS MiB | growth MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        growth = r["peak_rss_mib"] - r["rss_before_run_mib"]
        per_task = r["seconds"] / r["tasks"]
        lines.append(f"| {r['tasks']} | {r['file_mib']:.2f} | {r['seconds']:.1f} | {per_task:.4f} | "
                     f"{r['rss_before_run_mib']:.0f} | {r['peak_rss_mib']:.0f} | {growth:.0f} |")  # fmt: skip
    small, large = rows[0], rows[-1]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    extra = large["peak_rss_mib"] - small["peak_rss_mib"]
    lines += ["", f"Peak RSS {large['tasks']} / {small['tasks']} tasks: **{ratio:.3f}x** "
              f"({extra:+.0f} MiB for {large['tasks'] - small['tasks']} more tasks)."]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="10,10000", help="comma-separated task counts (default 10,10000)")
    parser.add_argument("--config", default="tiny", help="preset name, YAML file or checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument(
        "--instant", action="store_true", help="an instant stand-in model instead of the config's"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.config, args.overrides, args.instant)))
        return 0
    counts = sorted(int(n) for n in args.tasks.split(","))
    rows = []
    for n in counts:
        print(f"measuring {n} tasks ...", file=sys.stderr)
        rows.append(measure(n, args))
    model = (
        "instant stand-in" if args.instant else f"config {args.config!r} {' '.join(args.overrides)}".strip()
    )
    print(report(rows, model))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": model, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
