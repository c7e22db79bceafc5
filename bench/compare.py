"""Side-by-side benchmark: the official baseline's method vs the solution (batched + prefetch, and unbatched).

    python bench/compare.py [--split data/sample] [--config pocket] [--set k=v ...] [--json FILE] [--png FILE]
                            [--memory-tasks 10,200] [--repeat N] [--out DIR]

One run, one machine, one split. Each system runs in a fresh process through its own entry point, on the same
tasks file and with the same --set overrides (e.g. `--set runtime.threads=1`):
  - baseline:            `python baseline/run.py` (baseline/model.py: 16 frames, STC connector, one forward
                         per option at batch size 1, greedy captions);
  - solution:            `python run.py` with the config's runtime.batch_size / batch_mode / prefetch;
  - solution unbatched:  `python run.py --set runtime.batch_size=1 --set runtime.prefetch=0`.
For each: accuracy and the contest's METEOR (solution.score, when the split has labels.json), mean seconds per
task (run_summary.json: model load excluded; a batch's time is split evenly among its tasks), the process's
wall seconds and its peak RSS (os.wait4 of that child). Then the ratios (baseline / solution s/task, unbatched
/ batched s/task), whether the batched and unbatched answers agree (QA choices and captions, exactly), and the
solution's peak RSS for each of --memory-tasks task counts (the split's tasks repeated under new task_ids).
`--repeat N` runs all three systems on the split's tasks repeated N times: batches fill up as on a contest's
thousands of tasks, where a 6-task split gives a caption batch of 2.
Prints markdown tables, writes a PNG bar chart and, with --json, the figures. Timings are of this one machine
and moment: compare the ratios, and run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KIT_ROOT = Path(__file__).resolve().parent.parent
if str(KIT_ROOT) not in sys.path:
    sys.path.insert(0, str(KIT_ROOT))

from solution.outputs import CLASSIFICATION_FILE, GENERATIVE_FILE, SUMMARY_FILE  # noqa: E402

SYSTEMS = {
    "baseline": ["baseline/run.py"],
    "solution": ["run.py", "--no_resume"],
    "solution unbatched": [
        "run.py",
        "--no_resume",
        "--set",
        "runtime.batch_size=1",
        "--set",
        "runtime.prefetch=0",
    ],
}
"""System name → the command after the Python interpreter (run from the kit root)."""
DEFAULT_PNG = KIT_ROOT / "bench" / "results" / "compare.png"
CONTEST_TASKS, CONTEST_HOURS = 5000, 3.5  # test-set size projected to (as submission check), CONTEST.md limit


def run_system(name: str, tasks: Path, out: Path, config: str, overrides: Sequence[str],
               extra: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """Run one system in a fresh process; its outputs go to `out`. Returns wall seconds, peak RSS, summary."""
    command = [sys.executable, *SYSTEMS[name], "--input_path", str(tasks), "--output_dir", str(out),
               "--config", config, "--no_progress", *extra]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "PYTHONPATH": str(KIT_ROOT)}
    threads = next((o.split("=", 1)[1] for o in overrides if o.startswith("runtime.threads=")), None)
    if threads and threads != "0":
        env.setdefault("OMP_NUM_THREADS", threads)
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, cwd=KIT_ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}); its log {log}:\n{log.read_text()[-3000:]}")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    return {
        "command": command,
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "tasks": summary["tasks"],
        "s_per_task": summary["mean_seconds_per_task"],
        "model_load_s": summary["model_load_seconds"],
        "by_source": summary["by_source"],
    }


def read_answers(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return tuple(json.loads((out / name).read_text()) for name in (CLASSIFICATION_FILE, GENERATIVE_FILE))  # type: ignore[return-value]


def quality(labels: Path, out: Path) -> dict[str, Any]:
    """Accuracy and the contest's METEOR of one system's outputs (solution.score)."""
    from solution import metrics, score

    report = score.score(
        score.load_labels(labels),
        score.load_predictions(out / CLASSIFICATION_FILE),
        score.load_predictions(out / GENERATIVE_FILE),
    )
    return {
        "accuracy": report["qa"]["accuracy"],
        "meteor": report["captioning"]["metrics"][metrics.METEOR_CONTEST],
    }


def agreement(a: Path, b: Path) -> dict[str, Any]:
    """Whether two output folders hold the same answers: QA choices and captions, exactly."""
    (qa_a, cap_a), (qa_b, cap_b) = read_answers(a), read_answers(b)
    qa_diff = sorted(k for k in qa_a.keys() | qa_b.keys() if qa_a.get(k) != qa_b.get(k))
    cap_diff = sorted(k for k in cap_a.keys() | cap_b.keys() if cap_a.get(k) != cap_b.get(k))
    return {"qa_same": not qa_diff, "captions_same": not cap_diff, "qa_differ": qa_diff, "captions_differ": cap_diff,
            "all_same": not qa_diff and not cap_diff}  # fmt: skip


def repeated_tasks(split: Path, n: int, folder: Path) -> Path:
    """A tasks file of `n` tasks: the split's tasks repeated under new task_ids, in `folder` (with labels.json to
    match when the split has one), whose media folders link to the split's (allow the split as a media root so
    the links may be followed)."""
    records = json.loads((split / "tasks.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for child in split.iterdir():
        if child.is_dir() and not (folder / child.name).exists():
            (folder / child.name).symlink_to(child.resolve(), target_is_directory=True)
    tasks = [{**records[i % len(records)], "task_id": f"r{i}"} for i in range(n)]
    if (split / "labels.json").is_file():
        labels = {str(r["task_id"]): r for r in json.loads((split / "labels.json").read_text())}
        (folder / "labels.json").write_text(json.dumps(
            [{**labels[str(records[i % len(records)]["task_id"])], "task_id": f"r{i}"} for i in range(n)]
        ))  # fmt: skip
    path = folder / "tasks.json"
    path.write_text(json.dumps(tasks))
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else ("n/a" if v is None else str(v)) for v in row]
        for row in rows
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(doc: dict[str, Any]) -> str:
    systems = doc["systems"]
    rows = [[name, s.get("accuracy"), s.get("meteor"), s["s_per_task"], s["s_per_task"] * CONTEST_TASKS / 3600,
             s["wall_s"], s["peak_rss_mib"]] for name, s in systems.items()]  # fmt: skip
    headers = ["system", "accuracy", "METEOR (contest)", "mean s/task", f"h for {CONTEST_TASKS:,} tasks",
               "process wall s", "peak RSS MiB"]  # fmt: skip
    r, agree = doc["ratios"], doc["agreement"]
    lines = [
        f"Split {doc['split']} ({doc['tasks']} tasks{', repeated' if doc['repeat'] > 1 else ''}), "
        f"config {doc['config']!r} {' '.join(doc['overrides'])}; "
        f"{os.cpu_count()} CPUs, load average {doc['load_average'][0]:.1f} at start, {doc['load_average'][1]:.1f} at end.",
        "",
        table(headers, rows),
        f"(the contest allows {CONTEST_HOURS} h per run; model load not included)",
        "",
        f"- baseline / solution s/task: **{r['baseline_over_solution']:.2f}x**",
        f"- solution unbatched / solution s/task: **{r['unbatched_over_batched']:.2f}x**",
        f"- baseline / solution unbatched s/task: {r['baseline_over_unbatched']:.2f}x",
        f"- solution peak RSS / baseline peak RSS: {r['solution_rss_over_baseline']:.2f}x",
        f"- batched and unbatched answers agree: QA {agree['qa_same']}, captions {agree['captions_same']}"
        + (
            ""
            if agree["all_same"]
            else f" (differ: QA {agree['qa_differ']}, captions {agree['captions_differ']})"
        ),
    ]
    memory = doc.get("memory") or []
    if memory:
        rows = [[m["tasks"], m["s_per_task"], m["peak_rss_mib"]] for m in memory]
        lines += ["", "Solution peak RSS by number of tasks (the split's tasks repeated):", "",
                  table(["tasks", "mean s/task", "peak RSS MiB"], rows)]  # fmt: skip
        if len(memory) > 1:
            lines.append(f"\nPeak RSS {memory[-1]['tasks']} / {memory[0]['tasks']} tasks: "
                         f"**{memory[-1]['peak_rss_mib'] / memory[0]['peak_rss_mib']:.3f}x**")  # fmt: skip
    return "\n".join(lines)


def chart(doc: dict[str, Any], path: Path) -> None:
    """Bar charts: mean s/task, peak RSS, accuracy and METEOR per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["systems"])
    panels = [("mean s/task", "s_per_task"), ("peak RSS MiB", "peak_rss_mib"), ("accuracy", "accuracy"),
              ("METEOR (contest)", "meteor")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (title, key) in zip(axes, panels, strict=True):
        values = [doc["systems"][n].get(key) or 0.0 for n in names]
        bars = ax.bar(range(len(names)), values, color=["#999999", "#2b7bba", "#8cb7dc"][: len(names)])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(range(len(names)), [n.replace(" ", "\n") for n in names], fontsize=8)
        ax.set_title(title, fontsize=10)
        if key in ("accuracy", "meteor"):
            ax.set_ylim(0, 1)
    fig.suptitle(f"{doc['config']} on {doc['split']} ({doc['tasks']} tasks)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split", type=Path, default=Path("data/sample"), help="folder with tasks.json (+ labels.json)"
    )
    parser.add_argument("--config", default="pocket", help="preset name, YAML file or checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="passed to every system, e.g. --set runtime.threads=1")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help=f"bar chart (default {DEFAULT_PNG})")
    parser.add_argument("--memory-tasks", default="10,200",
                        help="task counts for the solution's peak-RSS check, comma-separated; '' skips it")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every system on the split's tasks repeated this many times (new task_ids): "
                             "throughput on more tasks than a small split holds")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="keep every system's outputs and logs here (default: a temp folder)"
    )
    args = parser.parse_args(argv)

    split = args.split
    if not (split / "tasks.json").is_file():
        from solution.sample_split import make_sample_split

        print(f"{split}: no tasks.json, writing the sample split there", file=sys.stderr)
        make_sample_split(split)
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    counts = [int(n) for n in args.memory_tasks.split(",") if n.strip()]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        tasks, extra = (split / "tasks.json").resolve(), []
        if args.repeat > 1:
            n = args.repeat * len(json.loads(tasks.read_text()))
            tasks = repeated_tasks(split, n, work / "repeated")
            roots = json.dumps([str(split.resolve())])
            extra = ["--set", f"runtime.media_roots={roots}"]  # (baseline/run.py has no --media_root)
        labels = tasks.parent / "labels.json"
        systems: dict[str, dict[str, Any]] = {}
        for name in SYSTEMS:
            print(f"running {name} ...", file=sys.stderr)
            out = work / name.replace(" ", "_")
            systems[name] = run_system(name, tasks, out, args.config, args.overrides, extra)
            if labels.is_file():
                systems[name].update(quality(labels, out))
        agree = agreement(work / "solution", work / "solution_unbatched")
        memory = []
        for n in counts:
            print(f"measuring the solution's memory on {n} tasks ...", file=sys.stderr)
            folder = work / f"memory_{n}"
            path = repeated_tasks(split, n, folder / "split")
            row = run_system("solution", path, folder / "out", args.config, args.overrides,
                             extra=["--media_root", str(split.resolve())])  # fmt: skip
            memory.append({"tasks": n, **{k: row[k] for k in ("s_per_task", "wall_s", "peak_rss_mib")}})
    s = {name: systems[name]["s_per_task"] for name in systems}
    doc = {
        "split": str(split),
        "repeat": args.repeat,
        "config": args.config,
        "overrides": args.overrides,
        "tasks": systems["solution"]["tasks"],
        "load_average": [load_start, os.getloadavg()[0]],
        "systems": systems,
        "ratios": {
            "baseline_over_solution": ratio(s["baseline"], s["solution"]),
            "unbatched_over_batched": ratio(s["solution unbatched"], s["solution"]),
            "baseline_over_unbatched": ratio(s["baseline"], s["solution unbatched"]),
            "solution_rss_over_baseline": ratio(
                systems["solution"]["peak_rss_mib"], systems["baseline"]["peak_rss_mib"]
            ),
        },
        "agreement": agree,
        "memory": memory,
    }
    print(report(doc))
    chart(doc, args.png)
    print(f"\nChart: {args.png}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"Figures: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
