"""The main job: tasks file → media → model → the contest's output files; nothing lost, on time, resumable.

Every task gets a well-typed answer. A bad record or a model error gives that task a fallback answer (QA: a
valid choice_id, captioning: a non-empty caption) and a line in errors.json; unreadable media only removes
that modality (the model answers from what is left) and is noted there too.

- **Time budget** (`runtime.time_budget_s`): `Budget` projects the run's end (elapsed + remaining tasks ×
  recent mean seconds per task) and, when it would pass the budget, steps down through `LEVELS`: cheaper
  settings of the already-built model (`level_config`, installed per task by `model_settings`), then fallback
  answers.
- **Resume** (`runtime.resume`): every finished task is journalled (`journal.py`); a rerun on the same inputs
  reuses those answers, so a killed run resumed gives the same output files as an uninterrupted one.
- **Confinement**: media are read only inside the tasks file's folder and `runtime.media_roots` (symlinks
  resolved) unless `runtime.allow_any_media_path`; a path outside gets an errors.json line and is not read.
- **Batches** (`runtime.batch_size`, `runtime.batch_mode`): tasks of one type at the same level, in file order
  within a short look-ahead (`Runner.batches`), are encoded one by one, then answered together by
  `model.answer_batch` (a batch that fails is retried task by task, so one bad task costs only its own answer).
  Every task is then finished, journalled and timed in file order as before; its seconds are its batch's
  compute time split evenly among the batch's tasks plus its own bookkeeping.
- **Prefetch** (`runtime.prefetch`): background threads decode the media of the next batch while the model
  computes the current one (its levels are decided one batch ahead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .config import KitConfig, MediaConfig, resolve_path
from .errors import KitError, MediaError, TaskError
from .journal import Journal, journal_header, open_journal
from .llm import DTYPES
from .media.audio import task_audio
from .media.video import read_frames
from .outputs import write_outputs
from .tasks import Choice, Task, load_task_file, parse_task

STAGES = ("decode", "encoders", "fusion", "llm")
BATCH_LOOKAHEAD = 4  # a batch waits for more tasks of its type over at most this many batch sizes of records
TASK_TYPES = ("qa", "captioning")

LEVELS = {
    0: "the config's settings",
    1: "half the frames, no speech transcript",
    2: "a quarter of the frames, 1 video token per frame group, audio <= 30 s, captions <= 16 new tokens",
    3: "fallback answers, the model is not run",
}
"""Step-down levels of the time budget, from the config's own settings to fallback answers."""
FALLBACK_LEVEL = 3
LEVEL2_AUDIO_SECONDS = 30.0
LEVEL2_MAX_NEW_TOKENS = 16
CUT_MARK = " [...] "
OUTSIDE_ROOTS = "outside the tasks folder and runtime.media_roots, not read"


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


# -- time budget ---------------------------------------------------------------------------------------------


def level_config(cfg: KitConfig, level: int) -> KitConfig:
    """The settings of step-down `level` (LEVELS): `cfg` itself at level 0, cheaper copies at 1 and 2."""
    if level == 0 or level >= FALLBACK_LEVEL:
        return cfg
    media, vision, generation = cfg.media, cfg.vision, cfg.generation
    media = dataclasses.replace(media, num_frames=max(1, media.num_frames // (2 if level == 1 else 4)))
    audio = dataclasses.replace(cfg.audio, transcribe=False)
    if level >= 2:
        media = dataclasses.replace(
            media, max_audio_seconds=min(media.max_audio_seconds, LEVEL2_AUDIO_SECONDS)
        )
        vision = dataclasses.replace(vision, spatial_tokens=1)
        generation = dataclasses.replace(
            generation, max_new_tokens=min(generation.max_new_tokens, LEVEL2_MAX_NEW_TOKENS)
        )
    return dataclasses.replace(cfg, media=media, vision=vision, audio=audio, generation=generation)


@contextmanager
def model_settings(model: Any, cfg: KitConfig) -> Iterator[None]:
    """Let the built model answer one task with `cfg` (a step-down level's settings), then restore its own.

    The model reads its settings from `model.cfg` (pooling, prompt, generation length) and its audio encoder
    from `model.audio.cfg` (transcript on/off) at call time, so installing a cheaper config is all a step-down
    needs: no rebuild, no reload.
    """
    audio = getattr(model, "audio", None)
    saved_model, saved_audio = getattr(model, "cfg", None), getattr(audio, "cfg", None)
    model.cfg = cfg
    if audio is not None:
        audio.cfg = cfg.audio
    try:
        yield
    finally:
        model.cfg = saved_model
        if audio is not None:
            audio.cfg = saved_audio


class Budget:
    """Decides the level of each task so that the run ends within `seconds` of `started` (monotonic clock).

    Before each task it projects the end: elapsed + tasks left × mean seconds of the last `window` tasks at
    the current level (the run's first task, which pays for warm-up, is not counted). Past the budget, it
    steps down one level (and waits for `min_samples` tasks at the new level before judging again); at level 2
    it goes on while one more task fits, then answers the rest with fallbacks. Levels only go down.
    """

    def __init__(
        self,
        seconds: float,
        started: float,
        window: int = 20,
        min_samples: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.seconds, self.started, self.clock, self.min_samples = seconds, started, clock, min_samples
        self.level = 0
        self.recent: deque[float] = deque(maxlen=window)
        self.step_downs: list[dict[str, Any]] = []
        self._first = True

    def elapsed(self) -> float:
        return self.clock() - self.started

    def level_for(self, index: int, tasks_left: int) -> int:
        """The level for the task at `index`, with `tasks_left` tasks (this one included) still to compute."""
        if self.level >= FALLBACK_LEVEL:
            return self.level
        elapsed = self.elapsed()
        mean = sum(self.recent) / len(self.recent) if len(self.recent) >= self.min_samples else None
        if elapsed >= self.seconds or (mean is not None and elapsed + mean > self.seconds):
            self._step(FALLBACK_LEVEL, index, elapsed, mean, tasks_left)
        elif (
            mean is not None
            and elapsed + tasks_left * mean > self.seconds
            and self.level < FALLBACK_LEVEL - 1
        ):
            self._step(self.level + 1, index, elapsed, mean, tasks_left)
        return self.level

    def record(self, seconds: float) -> None:
        """Seconds the last computed task took at the current level."""
        if self._first:
            self._first = False
        else:
            self.recent.append(seconds)

    def _step(self, level: int, index: int, elapsed: float, mean: float | None, tasks_left: int) -> None:
        self.step_downs.append({
            "level": level,
            "from_index": index,
            "elapsed_s": round(elapsed, 3),
            "projected_s": None if mean is None else round(elapsed + tasks_left * mean, 3),
            "tasks_left": tasks_left,
        })  # fmt: skip
        why = (
            f"{elapsed:.1f} s elapsed"
            if mean is None
            else f"projected end {elapsed + tasks_left * mean:.1f} s"
        )
        print(f"time budget {self.seconds:.0f} s: {why}; stepping down to level {level} ({LEVELS[level]}) "
              f"from task index {index}", file=sys.stderr)  # fmt: skip
        self.level = level
        self.recent.clear()


# -- one task's outcome --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one task came to; journalled as one line and replayed, in file order, into a RunResult."""

    index: int
    key: str | None
    task_type: str | None
    value: int | str | None
    source: str  # model | degraded (a medium or some text dropped) | fallback
    level: int
    problems: list[tuple[str, str]]  # (stage, reason)
    seconds: float = 0.0
    reused: bool = False  # taken from the journal of an earlier run

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Outcome | None:
        """The outcome journalled in `entry`; None when the entry is not a well-typed outcome."""
        try:
            outcome = cls(
                **{**entry, "problems": [(str(s), str(r)) for s, r in entry["problems"]]}, reused=True
            )
        except (TypeError, ValueError, KeyError):
            return None
        value = outcome.value
        if outcome.task_type == "qa" and not (isinstance(value, int) and not isinstance(value, bool)):
            return None
        if outcome.task_type == "captioning" and not (isinstance(value, str) and value.strip()):
            return None
        return outcome


def type_label(task_type: Any) -> str | None:
    """A record's task_type as a summary label: a string or null as it is, other JSON values as JSON."""
    if task_type is None or isinstance(task_type, str):
        return task_type
    return json.dumps(task_type, ensure_ascii=False)[:40]


@dataclass
class RunResult:
    qa: dict[str, int] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # per task: key, type, source, level, seconds
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    time_budget_s: float | None = None
    elapsed_s: float = 0.0
    step_downs: list[dict[str, Any]] = field(default_factory=list)
    journal_note: str = ""

    def add(self, o: Outcome) -> None:
        """Take one task's outcome: its answer (the first task of a key wins), its error lines, its timing."""
        problems = list(o.problems)
        if o.task_type in TASK_TYPES:
            if o.key in self.qa or o.key in self.captions:
                problems.append(("record", f"duplicate key {o.key!r}: the earlier task's answer was kept"))
            elif o.task_type == "qa":
                self.qa[o.key] = o.value
            else:
                self.captions[o.key] = o.value
        for stage, reason in problems:
            self.errors.append({"index": o.index, "task_id": o.key, "stage": stage, "reason": reason,
                                "fallback": o.source == "fallback"})  # fmt: skip
        self.tasks.append({"key": o.key, "task_type": o.task_type, "source": o.source, "level": o.level,
                           "seconds": o.seconds, "reused": o.reused})  # fmt: skip

    def summary(self) -> dict[str, Any]:
        n = len(self.tasks)
        computed = sum(not t["reused"] for t in self.tasks)
        seconds = [t["seconds"] for t in self.tasks]
        return {
            "tasks": n,
            "by_type": dict(Counter(t["task_type"] for t in self.tasks)),
            "by_source": dict(Counter(t["source"] for t in self.tasks)),
            "by_level": {str(k): v for k, v in sorted(Counter(t["level"] for t in self.tasks).items())},
            "levels": {str(k): v for k, v in LEVELS.items()},
            "step_downs": self.step_downs,
            "time_budget_s": self.time_budget_s,
            "elapsed_s": self.elapsed_s,
            "reused_from_journal": n - computed,
            "journal": self.journal_note,
            "mean_seconds_per_task": sum(seconds) / n if n else 0.0,
            "model_load_seconds": self.load_seconds,
            "stage_seconds_per_task": {
                s: self.stage_seconds.get(s, 0.0) / computed if computed else 0.0 for s in STAGES
            },
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


def clip_middle(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, keeping its head and tail (where a question usually is)."""
    if len(text) <= limit:
        return text
    keep = limit - len(CUT_MARK)
    head = (keep + 1) // 2
    return text[:head] + CUT_MARK + text[len(text) - (keep - head) :]


def outside_roots(path: Path, roots: list[Path]) -> bool:
    """Whether `path`, symlinks resolved, lies outside every one of `roots` (already resolved)."""
    real = Path(os.path.realpath(path))
    return not any(real.is_relative_to(root) for root in roots)


# -- the runner ----------------------------------------------------------------------------------------------


class Runner:
    """Answers tasks one by one with a built model; collects answers, errors and timings."""

    def __init__(
        self, model, cfg: KitConfig, model_error: Exception | None = None, budget: Budget | None = None
    ):
        self.model = model
        self.cfg = cfg
        self.model_error = model_error
        self.budget = budget
        self.timer = StageTimer()
        self._ready: dict[int, Any] = {}  # index → (answer value, problems) or its exception, from its batch
        self._prefetched: dict[int, Future] = {}  # index → decoding (frames, wave, problems, seconds)
        self._computed: dict[int, tuple[int, float]] = {}  # index → (level, its share of its batch's seconds)

    def media_roots(self, root: Path) -> list[Path] | None:
        """The folders media may come from (symlinks resolved); None when any path is allowed."""
        runtime = self.cfg.runtime
        if runtime.allow_any_media_path:
            return None
        folders = [Path(root), *(resolve_path(p) for p in runtime.media_roots)]
        return [Path(os.path.realpath(folder)) for folder in folders]

    def prepare(self, task: Task, roots: list[Path] | None) -> tuple[Task, list[tuple[str, str]]]:
        """The task without media outside `roots` and with overlong text cut; a problem for each change."""
        problems: list[tuple[str, str]] = []
        media = {}
        for name in ("video", "audio"):
            path = getattr(task, name)
            if path is not None and roots is not None and outside_roots(path, roots):
                real = os.path.realpath(path)
                where = f" (resolves to {real})" if str(real) != str(path) else ""
                allow = "allow it with --media_root DIR or --allow_any_media_path"
                problems.append((name, f"{path}{where}: {OUTSIDE_ROOTS} ({allow})"))
                media[name] = None
        limit = self.cfg.runtime.max_question_chars
        question = clip_middle(task.question, limit)
        if question != task.question:
            problems.append(("text", f"question of {len(task.question)} characters cut to {len(question)} "
                                     "(head and tail kept)"))  # fmt: skip
        choices = tuple(Choice(c.choice_id, clip_middle(c.text, limit)) for c in task.choices)
        if choices != task.choices:
            problems.append(
                ("text", f"option text(s) longer than {limit} characters cut (head and tail kept)")
            )
        return dataclasses.replace(task, question=question, choices=choices, **media), problems

    def load_media(self, task: Task, media: MediaConfig | None = None):
        """Frames and waveform for a task; unreadable media become (None, problem) instead of an exception."""
        with self.timer.stage("decode"):
            frames, wave, problems, _ = self.decode(task, media or self.cfg.media)
        return frames, wave, problems

    def decode(self, task: Task, media: MediaConfig):
        """load_media without the stage timer (safe in a background thread): frames, wave, problems, seconds."""
        start = time.perf_counter()
        problems: list[tuple[str, str]] = []
        frames = wave = None
        if task.video is not None:
            try:
                frames = read_frames(task.video, media.num_frames, media.max_side)
            except MediaError as exc:
                problems.append(("video", str(exc)))
        if self.cfg.audio.encoder != "none":
            wave, source = task_audio(task.audio, task.video, media.max_audio_seconds)
            if task.audio is not None and source != "audio file":
                problems.append(("audio", source))
        return frames, wave, problems, time.perf_counter() - start

    def media_for(self, task: Task, media: MediaConfig):
        """The task's media: decoded in the background when prefetched (the wait counts as the decode stage, the
        workers' own seconds as decode_background in the run's stage totals), else decoded now."""
        future = self._prefetched.pop(task.index, None)
        if future is None:
            return self.load_media(task, media)
        with self.timer.stage("decode"):  # only the wait shows in the task's time
            frames, wave, problems, seconds = future.result()
        self.timer.totals["decode_background"] += seconds
        return frames, wave, problems

    def answer(self, task: Task, level: int = 0, roots: list[Path] | None = None):
        """Run the model on one parsed task at a step-down level; returns (answer value, problems)."""
        if self.model is None:
            raise self.model_error or KitError("no model was built")
        ready = self._ready.pop(task.index, None)
        if isinstance(ready, Exception):
            raise ready
        if ready is not None:  # computed with its batch
            return ready
        cfg = level_config(self.cfg, level)
        model = self.model
        with model_settings(model, cfg) if level else nullcontext():
            task, prefix, problems = self.encode(task, cfg, roots)
            with torch.inference_mode(), self.timer.stage("llm"):
                answer = model.answer(task, prefix)
        return self.finish(task, answer, problems)

    def encode(self, task: Task, cfg: KitConfig, roots: list[Path] | None):
        """Prepare one task, read its media (prefetched or now), run the encoders and build its LLM prefix:
        (the prepared task, its prefix embeddings, the problems so far)."""
        task, problems = self.prepare(task, roots)
        frames, wave, media_problems = self.media_for(task, cfg.media)
        problems += media_problems
        with torch.inference_mode(), self.timer.stage("encoders"):
            encoded = self.model.encode(frames, wave)
        with torch.inference_mode(), self.timer.stage("fusion"):
            prefix = self.model.prefix_embeds(task, encoded)
        return task, prefix, problems

    def finish(self, task: Task, answer: Any, problems: list[tuple[str, str]]):
        """The model's Answer as an answer value (a choice id, or a cleaned, never empty caption) and problems."""
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

    def answer_record(self, record: Any, index: int, root: Path, level: int = 0,
                      roots: list[Path] | None = None) -> Outcome:  # fmt: skip
        """One record's outcome: the model's answer, or a fallback with the reason."""
        key = record_key(record, index, self.cfg.runtime.keying)
        task_type = type_label(record.get("task_type") if isinstance(record, dict) else None)
        source, value, problems = "model", None, []
        try:
            task = parse_task(record, index, root)
            if level >= FALLBACK_LEVEL:
                source = "fallback"
                budget = self.cfg.runtime.time_budget_s
                problems = [("budget", f"time budget of {budget:.0f} s: not enough time left for the model, "
                                       "the fallback answer was written")]  # fmt: skip
            else:
                value, problems = self.answer(task, level, roots)
                source = "degraded" if problems else "model"
        except TaskError as exc:
            source, problems = "fallback", [("record", str(exc))]
        except Exception as exc:  # a model error in one task must not cost the others their answers
            source, problems = "fallback", [("model", f"{type(exc).__name__}: {exc}")]
            traceback.print_exc(limit=3, file=sys.stderr)
        if task_type not in TASK_TYPES:
            reason = f"task_type {task_type!r} is neither 'qa' nor 'captioning': no answer file takes it"
            problems.append(("record", reason))
        elif key is None:
            key = str(index)
            problems.append(("record", f"no usable task_id: answered under its position {index}"))
        if source == "fallback" and task_type in TASK_TYPES:
            value = fallback_choice(record) if task_type == "qa" else self.cfg.prompt.fallback_caption
        return Outcome(index, key, task_type, value, source, level, problems)

    def run(
        self,
        records: list,
        root: Path,
        progress: bool = True,
        journal: Journal | None = None,
        reused: dict[int, Outcome] | None = None,
    ) -> RunResult:
        """Answer `records` in order. Tasks in `reused` (by index, from a journal) are taken as they are; the
        others are computed, in batches of runtime.batch_size, and, when `journal` is given, journalled in file
        order (not the time budget's fallbacks, nor answers without a model).
        """
        result = RunResult()
        reused = reused or {}
        roots = self.media_roots(root)
        runtime = self.cfg.runtime
        workers = runtime.prefetch if self.model is not None else 0
        pool = ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers else None
        bar = tqdm(total=len(records), desc="tasks", unit="task", disable=not progress, file=sys.stderr)
        batches = self.batches(records, reused)
        try:
            current = next(batches, None)
            if current is not None and pool is not None:
                self.prefetch(pool, records, root, roots, current)
            while current is not None:
                upcoming = next(batches, None) if pool is not None else None
                if upcoming is not None:  # decoded in the background while this batch computes
                    self.prefetch(pool, records, root, roots, upcoming)
                self.run_batch(records, root, roots, current, result, reused, journal, bar)
                current = upcoming if pool is not None else next(batches, None)
            assert len(result.tasks) == len(records), (len(result.tasks), len(records))
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._prefetched.clear()
            self._ready.clear()
            self._computed.clear()
        result.stage_seconds = dict(self.timer.totals)
        result.step_downs = list(self.budget.step_downs) if self.budget else []
        return result

    def batches(
        self, records: list, reused: dict[int, Outcome]
    ) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """(end, [(index, level), ...]): the next batch of tasks to compute, and the index up to which (not
        included) every record is then final.

        A batch holds up to batch_size tasks of one task type at one level, in file order: QA tasks share
        padded forwards, captions decode their rows together (a decoding step costs about the same for 1 and for
        8 rows on CPU, so captions are not left to share batches with QA tasks). A group waits for more tasks of
        its type for at most BATCH_LOOKAHEAD batches' worth of records (answers are finished, journalled and
        timed in file order, so later records wait for it), and goes before any task of another level (levels
        are decided by the time budget as the records are reached)."""
        size = self.cfg.runtime.batch_size if hasattr(self.model, "answer_batch") else 1
        to_compute = sum(1 for i in range(len(records)) if i not in reused)
        groups: dict[tuple[int, str], list[tuple[int, int]]] = {}  # (level, task type) → waiting tasks

        def flush(keys: list[tuple[int, str]], next_index: int):
            """Yield these groups, the one with the earliest task first."""
            for key in sorted(keys, key=lambda k: groups[k][0][0]):
                group = groups.pop(key)
                yield min([next_index, *(g[0][0] for g in groups.values())]), group

        for index in range(len(records)):
            if index in reused:
                continue
            yield from flush(
                [k for k, g in groups.items() if index - g[0][0] >= BATCH_LOOKAHEAD * size], index
            )
            level = self.budget.level_for(index, to_compute) if self.budget else 0
            to_compute -= 1
            yield from flush([k for k in groups if k[0] != level], index)
            record = records[index]
            key = (level, str(record.get("task_type")) if isinstance(record, dict) else "")
            groups.setdefault(key, []).append((index, level))
            if len(groups[key]) >= size:
                yield from flush([key], index + 1)
        yield from flush(list(groups), len(records))
        yield len(records), []  # finishes the records after the last batch that were reused from the journal

    def prefetch(self, pool: ThreadPoolExecutor, records: list, root: Path, roots: list[Path] | None,
                 batch: tuple[int, list[tuple[int, int]]]) -> None:  # fmt: skip
        """Start decoding the media of a batch's tasks in the background (records that do not parse are left
        to their turn, which reports them)."""
        for index, level in batch[1]:
            if level >= FALLBACK_LEVEL:
                continue
            try:
                task, _ = self.prepare(parse_task(records[index], index, root), roots)
            except Exception:
                continue
            self._prefetched[index] = pool.submit(self.decode, task, level_config(self.cfg, level).media)

    def run_batch(self, records: list, root: Path, roots: list[Path] | None,
                  batch: tuple[int, list[tuple[int, int]]], result: RunResult, reused: dict[int, Outcome],
                  journal: Journal | None, bar) -> None:  # fmt: skip
        """Compute one batch, then finish every record up to its end in file order (reused ones included)."""
        end, items = batch
        start = time.perf_counter()
        self.compute_batch(records, root, roots, items)
        share = (time.perf_counter() - start) / len(items) if items else 0.0
        self._computed.update((index, (level, share)) for index, level in items)
        for index in range(len(result.tasks), end):
            outcome = reused.get(index)
            if outcome is None:
                level, share = self._computed.pop(index)
                start = time.perf_counter()
                outcome = self.answer_record(records[index], index, root, level, roots)
                outcome.seconds = share + time.perf_counter() - start
                if level < FALLBACK_LEVEL:
                    if self.budget:
                        self.budget.record(outcome.seconds)
                    if journal is not None and self.model is not None:
                        journal.append(outcome.to_json())
            result.add(outcome)
            bar.update(1)

    def compute_batch(self, records: list, root: Path, roots: list[Path] | None,
                      items: list[tuple[int, int]]) -> None:  # fmt: skip
        """Answer a batch's tasks together (model.answer_batch); their results wait in self._ready for
        answer_record. A task whose record, media or encoders fail keeps its exception there; when the batched
        answer fails, each task is answered alone, so one bad task costs only its own answer. A single task
        (without prefetched media) is left to answer_record, as it always was."""
        if not items or self.model is None or items[0][1] >= FALLBACK_LEVEL:
            return
        if len(items) == 1 and items[0][0] not in self._prefetched:
            return
        level = items[0][1]
        cfg = level_config(self.cfg, level)
        model = self.model
        prepared = []
        with model_settings(model, cfg) if level else nullcontext():
            for index, _ in items:
                try:
                    task = parse_task(records[index], index, root)
                except TaskError:
                    self._prefetched.pop(index, None)
                    continue  # answer_record reports it
                try:
                    prepared.append(self.encode(task, cfg, roots))
                except Exception as exc:  # reported by answer_record as a model error of this task only
                    self._ready[index] = exc
            if not prepared:
                return
            tasks, prefixes = [p[0] for p in prepared], [p[1] for p in prepared]
            try:
                with torch.inference_mode(), self.timer.stage("llm"):
                    answers: list[Any] = model.answer_batch(tasks, prefixes, mode=self.batch_mode())
            except Exception:
                traceback.print_exc(limit=3, file=sys.stderr)
                print(f"the batch of tasks {[t.index for t in tasks]} failed: answering them one by one",
                      file=sys.stderr)  # fmt: skip
                answers = []
                for task, prefix in zip(tasks, prefixes, strict=True):
                    try:
                        with torch.inference_mode(), self.timer.stage("llm"):
                            answers.append(model.answer(task, prefix))
                    except Exception as exc:
                        answers.append(exc)
        for (task, _, problems), answer in zip(prepared, answers, strict=True):
            try:
                if isinstance(answer, Exception):
                    raise answer
                self._ready[task.index] = self.finish(task, answer, problems)
            except Exception as exc:
                self._ready[task.index] = exc

    def batch_mode(self) -> str:
        """runtime.batch_mode with auto resolved: exact where the LLM computes in 16 bits on CPU (bf16 autocast or
        llm.dtype bfloat16/float16), full otherwise."""
        mode = self.cfg.runtime.batch_mode
        if mode != "auto":
            return mode
        device = getattr(self.model, "device", torch.device("cpu"))
        sixteen_bits = self.cfg.runtime.cpu_bf16_autocast or self.cfg.llm.dtype != "float32"
        return "exact" if device.type == "cpu" and sixteen_bits else "full"


def tune_for_inference(model: Any, cfg: KitConfig) -> Any:
    """Apply the runtime's speed settings to a built model: the LLM's attention kernel, its dtype on CUDA
    (runtime.cuda_dtype) and torch.compile (runtime.compile). Models without an `llm` are returned as they are."""
    llm = getattr(model, "llm", None)
    if llm is None:
        return model
    runtime = cfg.runtime
    config = getattr(llm, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) != runtime.attn_implementation:
        llm.set_attn_implementation(runtime.attn_implementation)
    device = next(llm.parameters()).device
    float32 = next(llm.parameters()).dtype == torch.float32
    if device.type == "cuda" and runtime.cuda_dtype != "float32" and float32:
        llm.to(DTYPES[runtime.cuda_dtype])
    if runtime.compile:
        llm.compile(dynamic=True)
    return model


def run_tasks(
    tasks_path: Path, out_dir: Path, cfg: KitConfig, progress: bool = True, model: Any = None
) -> RunResult:
    """Read the tasks file, build the model (unless `model` is given), answer every task, write the outputs.

    Raises TaskFileError when the tasks file itself is unusable (nothing is written then). When the model
    cannot be built, every task gets its fallback answer, the reason goes to errors.json, and the KitError is
    re-raised after the files are written. Finished tasks are journalled in `out_dir`; a rerun on the same
    tasks file and config reuses them (see journal.py). The journal is removed once the outputs hold every
    task's final answer (it stays when the model could not be built or the time budget forced fallbacks, so a
    rerun can improve on them). The time budget counts from this call.
    """
    from .model import build_model

    started = time.monotonic()
    tasks_path, out_dir = Path(tasks_path), Path(out_dir)
    records = load_task_file(tasks_path)
    journal, done, note = open_journal(
        out_dir, journal_header(tasks_path, cfg, len(records)), cfg.runtime.resume
    )
    reused = {i: o for i, entry in done.items() if (o := Outcome.from_json(entry)) is not None}
    print(f"resume: {note}", file=sys.stderr)
    build_error = None
    start = time.perf_counter()
    if model is None and len(reused) < len(records):  # with every task journalled, no model is needed
        try:
            model = tune_for_inference(build_model(cfg), cfg)
        except KitError as exc:  # answer everything with fallbacks so nothing is lost, then report it
            build_error = exc
    load_seconds = time.perf_counter() - start
    runner = Runner(model, cfg, build_error, Budget(cfg.runtime.time_budget_s, started))
    try:
        result = runner.run(records, tasks_path.parent, progress=progress, journal=journal, reused=reused)
    finally:
        journal.close()
    result.load_seconds = load_seconds
    result.time_budget_s = cfg.runtime.time_budget_s
    result.journal_note = note
    result.elapsed_s = time.monotonic() - started
    write_outputs(out_dir, result.qa, result.captions, result.errors, result.summary())
    if build_error is None and all(t["level"] < FALLBACK_LEVEL for t in result.tasks):
        journal.path.unlink(missing_ok=True)  # every answer is final and written: nothing left to resume
    if build_error is not None:
        raise build_error
    return result


def format_summary(result: RunResult, out_dir: Path) -> str:
    s = result.summary()
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(s["by_type"].items(), key=lambda kv: str(kv[0])))
    source = {name: s["by_source"].get(name, 0) for name in ("model", "degraded", "fallback")}
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_seconds_per_task"].items())
    levels = ", ".join(f"level {k}: {v}" for k, v in s["by_level"].items())
    lines = [
        f"Answered {s['tasks']} tasks ({by_type}): {source['model']} by the model, "
        f"{source['degraded']} with a modality missing or text cut, {source['fallback']} fallbacks.",
        f"Mean seconds per task: {s['mean_seconds_per_task']:.3f} ({stages}); "
        f"model load {s['model_load_seconds']:.1f} s.",
    ]
    if s["time_budget_s"] is not None:
        lines.append(
            f"Time budget {s['time_budget_s']:.0f} s, used {s['elapsed_s']:.1f} s; tasks by level: {levels}."
        )
        for step in s["step_downs"]:
            lines.append(f"  step-down to level {step['level']} ({LEVELS[step['level']]}) from task index "
                         f"{step['from_index']} at {step['elapsed_s']:.1f} s")  # fmt: skip
    refused = sum(OUTSIDE_ROOTS in e["reason"] for e in result.errors)
    if refused:
        lines.append(f"WARNING: {refused} media path(s) outside the tasks folder were not read "
                     "(--media_root DIR or --allow_any_media_path allow them).")  # fmt: skip
    if s["reused_from_journal"]:
        lines.append(f"Resumed: {s['reused_from_journal']} task(s) reused from the journal.")
    lines += [f"Problems logged: {len(result.errors)} (see {Path(out_dir) / 'errors.json'}).",
              f"Outputs written to {out_dir}/"]  # fmt: skip
    return "\n".join(lines)
