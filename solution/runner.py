"""The main job: tasks file → media → model → the contest's output files, with nothing lost.

Every task gets a well-typed answer. A bad record or a model error gives that task a fallback answer (QA: a valid
choice_id, captioning: a non-empty caption) and a line in errors.json; unreadable media only removes that
modality (the model answers from what is left) and is noted there too.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .config import KitConfig
from .errors import KitError, MediaError, TaskError
from .media.audio import task_audio
from .media.video import read_frames
from .outputs import write_outputs
from .tasks import Task, load_task_file, parse_task

STAGES = ("decode", "encoders", "fusion", "llm")


class StageTimer:
    """Accumulates wall-clock seconds per pipeline stage."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - start


@dataclass
class RunResult:
    qa: dict[str, int] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # per task: key, type, seconds, source
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        n = len(self.tasks)
        seconds = [t["seconds"] for t in self.tasks]
        return {
            "tasks": n,
            "by_type": dict(Counter(t["task_type"] for t in self.tasks)),
            "by_source": dict(Counter(t["source"] for t in self.tasks)),
            "mean_seconds_per_task": sum(seconds) / n if n else 0.0,
            "model_load_seconds": self.load_seconds,
            "stage_seconds_per_task": {s: self.stage_seconds.get(s, 0.0) / n if n else 0.0 for s in STAGES},
            "per_task": self.tasks,
        }


def fallback_choice(record: Any) -> int:
    """A valid choice_id from a (possibly malformed) QA record: the first integer choice_id, else 0."""
    choices = record.get("choices") if isinstance(record, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        if (
            isinstance(choice, dict)
            and isinstance(choice.get("choice_id"), int)
            and not isinstance(choice["choice_id"], bool)
        ):
            return choice["choice_id"]
    return 0


def record_key(record: Any, index: int, keying: str) -> str | None:
    """The output key of a record: str(task_id) or its position; None when it has no usable task_id."""
    if keying == "position":
        return str(index)
    task_id = record.get("task_id") if isinstance(record, dict) else None
    if isinstance(task_id, bool) or not isinstance(task_id, int | str) or str(task_id) == "":
        return None
    return str(task_id)


class Runner:
    """Answers tasks one by one with a built model; collects answers, errors and timings."""

    def __init__(self, model, cfg: KitConfig, model_error: Exception | None = None):
        assert (model is None) != (model_error is None), "give either a model or the reason there is none"
        self.model = model
        self.cfg = cfg
        self.model_error = model_error
        self.timer = StageTimer()

    def load_media(self, task: Task):
        """Frames and waveform for a task; unreadable media become (None, problem) instead of an exception."""
        problems: list[tuple[str, str]] = []
        frames = wave = None
        media = self.cfg.media
        with self.timer.stage("decode"):
            if task.video is not None:
                try:
                    frames = read_frames(task.video, media.num_frames, media.max_side)
                except MediaError as exc:
                    problems.append(("video", str(exc)))
            if self.cfg.audio.encoder != "none":
                wave, source = task_audio(task.audio, task.video, media.max_audio_seconds)
                if task.audio is not None and source != "audio file":
                    problems.append(("audio", source))
        return frames, wave, problems

    def answer(self, task: Task):
        """Run the model on one parsed task; returns (answer value, problems)."""
        if self.model is None:
            raise self.model_error
        frames, wave, problems = self.load_media(task)
        model = self.model
        with torch.inference_mode(), self.timer.stage("encoders"):
            encoded = model.encode(frames, wave)
        with torch.inference_mode(), self.timer.stage("fusion"):
            prefix = model.prefix_embeds(task, encoded)
        with torch.inference_mode(), self.timer.stage("llm"):
            answer = model.answer(task, prefix)
        if task.task_type == "qa":
            assert answer.choice_id in {c.choice_id for c in task.choices}, answer.choice_id
            return answer.choice_id, problems
        caption = " ".join((answer.caption or "").split())
        if not caption:
            problems.append(
                ("answer", "the model produced an empty caption; the fallback caption was written")
            )
            caption = self.cfg.prompt.fallback_caption
        return caption, problems

    def run(self, records: list, root: Path, progress: bool = True) -> RunResult:
        result = RunResult()
        keying = self.cfg.runtime.keying
        for index, record in enumerate(
            tqdm(records, desc="tasks", unit="task", disable=not progress, file=sys.stderr)
        ):
            start = time.perf_counter()
            key = record_key(record, index, keying)
            task_type = record.get("task_type") if isinstance(record, dict) else None
            source, value, problems = "model", None, []
            try:
                task = parse_task(record, index, root)
                value, problems = self.answer(task)
                source = "degraded" if problems else "model"
            except TaskError as exc:
                source, problems = "fallback", [("record", str(exc))]
            except Exception as exc:  # a model error in one task must not cost the others their answers
                source, problems = "fallback", [("model", f"{type(exc).__name__}: {exc}")]
                traceback.print_exc(limit=3, file=sys.stderr)
            if task_type not in ("qa", "captioning"):
                problems.append(
                    (
                        "record",
                        f"task_type {task_type!r} is neither 'qa' nor 'captioning': no answer file takes it",
                    )
                )
            elif key is None:
                key = str(index)
                problems.append(("record", f"no usable task_id: answered under its position {index}"))
            if source == "fallback" and task_type in ("qa", "captioning"):
                value = fallback_choice(record) if task_type == "qa" else self.cfg.prompt.fallback_caption
            answers = result.qa if task_type == "qa" else result.captions
            if task_type in ("qa", "captioning"):
                if key in result.qa or key in result.captions:
                    problems.append(("record", f"duplicate key {key!r}: the earlier task's answer was kept"))
                else:
                    answers[key] = value
            for stage, reason in problems:
                result.errors.append({"index": index, "task_id": key, "stage": stage, "reason": reason,
                                      "fallback": source == "fallback"})  # fmt: skip
            result.tasks.append({"key": key, "task_type": task_type, "source": source,
                                 "seconds": time.perf_counter() - start})  # fmt: skip
        result.stage_seconds = dict(self.timer.totals)
        return result


def run_tasks(tasks_path: Path, out_dir: Path, cfg: KitConfig, progress: bool = True) -> RunResult:
    """Read the tasks file, build the model, answer every task and write the output files.

    Raises TaskFileError when the tasks file itself is unusable (nothing is written then). When the model cannot
    be built, every task gets its fallback answer, the reason goes to errors.json, and the KitError is re-raised
    after the files are written.
    """
    from .model import build_model

    tasks_path = Path(tasks_path)
    records = load_task_file(tasks_path)
    start = time.perf_counter()
    model, build_error = None, None
    try:
        model = build_model(cfg)
    except KitError as exc:  # answer everything with fallbacks so nothing is lost, then report the failure
        build_error = exc
    load_seconds = time.perf_counter() - start
    result = Runner(model, cfg, build_error).run(records, tasks_path.parent, progress=progress)
    result.load_seconds = load_seconds
    write_outputs(out_dir, result.qa, result.captions, result.errors, result.summary())
    if build_error is not None:
        raise build_error
    return result


def format_summary(result: RunResult, out_dir: Path) -> str:
    s = result.summary()
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(s["by_type"].items(), key=lambda kv: str(kv[0])))
    by_source = s["by_source"]
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_seconds_per_task"].items())
    return "\n".join([
        f"Answered {s['tasks']} tasks ({by_type}): {by_source.get('model', 0)} by the model, "
        f"{by_source.get('degraded', 0)} with a modality missing, {by_source.get('fallback', 0)} fallbacks.",
        f"Mean seconds per task: {s['mean_seconds_per_task']:.3f} ({stages}); model load {s['model_load_seconds']:.1f} s.",
        f"Problems logged: {len(result.errors)} (see {Path(out_dir) / 'errors.json'}).",
        f"Outputs written to {out_dir}/",
    ])  # fmt: skip
