"""Time budget (step-down levels), crash-safe resume (journal), SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solution import KIT_ROOT
from solution.config import load_config
from solution.journal import JOURNAL_FILE, journal_header, read_journal
from solution.outputs import CLASSIFICATION_FILE, ERRORS_FILE, GENERATIVE_FILE, SUMMARY_FILE
from solution.runner import FALLBACK_LEVEL, Budget, Runner, level_config, run_tasks
from solution.tasks import parse_task

sys.path.insert(0, str(KIT_ROOT))
import run  # noqa: E402

FINAL_FILES = (
    CLASSIFICATION_FILE,
    GENERATIVE_FILE,
    ERRORS_FILE,
)  # run_summary.json holds timings: it differs


def many_tasks(sample_tasks: Path, copies: int, folder: Path) -> Path:
    """A copy of the sample split in `folder` whose tasks.json holds the sample's records `copies` times over
    (new task_ids) plus two invalid records."""
    shutil.copytree(sample_tasks.parent, folder)
    records = json.loads(sample_tasks.read_text())
    out = [
        {**record, "task_id": f"{copy}-{record['task_id']}"} for copy in range(copies) for record in records
    ]
    out.insert(
        3, {"task_id": "bad-1", "task_type": "qa", "question": "", "video": "", "audio": "", "choices": []}
    )
    out.append({"task_id": "bad-2", "task_type": "captioning"})
    path = folder / "tasks.json"
    path.write_text(json.dumps(out))
    return path


def read(out: Path, name: str):
    return json.loads((out / name).read_text())


def same_files(a: Path, b: Path) -> None:
    for name in FINAL_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# -- time budget ---------------------------------------------------------------------------------------------


def test_level_configs():
    cfg = load_config("pocket")  # 8 frames, transcript on, 4 spatial tokens, 60 s audio, 40 new tokens
    assert level_config(cfg, 0) is cfg and level_config(cfg, FALLBACK_LEVEL) is cfg
    one, two = level_config(cfg, 1), level_config(cfg, 2)
    assert (one.media.num_frames, one.audio.transcribe, one.vision.spatial_tokens) == (4, False, 4)
    assert one.generation == cfg.generation and one.media.max_audio_seconds == 60
    assert (two.media.num_frames, two.vision.spatial_tokens, two.media.max_audio_seconds) == (2, 1, 30)
    assert two.generation.max_new_tokens == 16 and not two.audio.transcribe
    assert cfg.media.num_frames == 8 and cfg.audio.transcribe  # the original is untouched


def simulate(budget_s: float, n: int, cost: dict[int, float]) -> tuple[list[int], float, Budget]:
    """Run `n` tasks against a Budget on a fake clock: level L costs cost[L] seconds, a fallback nothing."""
    clock = [0.0]
    budget = Budget(budget_s, started=0.0, clock=lambda: clock[0])
    levels = []
    for index in range(n):
        level = budget.level_for(index, n - index)
        levels.append(level)
        if level < FALLBACK_LEVEL:
            clock[0] += cost[level]
            budget.record(cost[level])
    return levels, clock[0], budget


def test_budget_steps_down_until_the_rest_fits():
    levels, end, budget = simulate(100, 100, {0: 3.0, 1: 1.5, 2: 0.8})
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 2  # levels only go down
    assert [s["level"] for s in budget.step_downs] == [1, 2]
    assert levels.index(1) == budget.step_downs[0]["from_index"] == 4  # the warm-up task + 3 samples
    assert FALLBACK_LEVEL not in levels and end <= 100


def test_budget_answers_with_the_model_while_time_lasts_then_falls_back():
    levels, end, budget = simulate(100, 100, {0: 3.0, 1: 2.5, 2: 2.0})
    assert [s["level"] for s in budget.step_downs] == [1, 2, FALLBACK_LEVEL]
    assert end <= 100 and levels.count(FALLBACK_LEVEL) < 60
    assert simulate(1000, 100, {0: 3.0, 1: 1.0, 2: 1.0})[2].step_downs == []  # in budget: no step-down


def test_step_down_settings_reach_the_built_model(sample_tasks: Path, tiny_model, monkeypatch):
    """A level is a config the runner installs on the already-built model for one task, then removes: the
    model's own calls see fewer frames, fewer video tokens and a shorter caption cap."""
    import solution.heads as heads
    import solution.runner as runner_module

    cfg = load_config(
        "tiny", ["media.num_frames=8", "generation.max_new_tokens=40"]
    )  # model: 4 frames, 8 tokens
    records = json.loads(sample_tasks.read_text())
    index = next(i for i, r in enumerate(records) if r["task_type"] == "captioning")
    task = parse_task(records[index], index, sample_tasks.parent)
    seen = {}
    read_frames, prefix_embeds, generate = (
        runner_module.read_frames,
        tiny_model.prefix_embeds,
        heads.generate_caption,
    )

    def spy_read_frames(path, num_frames, max_side):
        seen["frames"] = num_frames
        return read_frames(path, num_frames, max_side)

    def spy_prefix_embeds(task, encoded):
        seen["video_tokens"] = encoded.video[0].shape[0]
        return prefix_embeds(task, encoded)

    def spy_generate(*args, **kwargs):
        seen["max_new_tokens"] = kwargs["max_new_tokens"]
        return generate(*args, **kwargs)

    monkeypatch.setattr(runner_module, "read_frames", spy_read_frames)
    monkeypatch.setattr(tiny_model, "prefix_embeds", spy_prefix_embeds)
    monkeypatch.setattr(heads, "generate_caption", spy_generate)
    own_cfg = tiny_model.cfg
    caption, problems = Runner(tiny_model, cfg).answer(task, level=2)
    # 8 // 4 = 2 frames, temporal stride 2 → 1 group x 1 spatial token; captions capped at 16 new tokens
    assert seen == {"frames": 2, "video_tokens": 1, "max_new_tokens": 16}
    assert caption.strip() and problems == []
    assert tiny_model.cfg is own_cfg  # restored
    Runner(tiny_model, cfg).answer(
        task, level=0
    )  # level 0: the runner's media settings, the model's own config
    assert seen == {"frames": 8, "video_tokens": 4 * 4, "max_new_tokens": own_cfg.generation.max_new_tokens}


def test_a_tiny_budget_ends_in_time_with_every_task_answered(sample_tasks: Path, tmp_path: Path, capsys):
    tasks = many_tasks(sample_tasks, 25, tmp_path / "split")  # 152 tasks, about 8 s at level 0 here
    records = json.loads(tasks.read_text())
    out, budget = tmp_path / "out", 3.0
    start = time.monotonic()
    flags = ["--config", "tiny", "--no_progress", "--set", "runtime.threads=1", "--time_budget", str(budget)]
    code = run.main(["--input_path", str(tasks), "--output_dir", str(out), *flags])
    seconds = time.monotonic() - start
    assert code == 0
    assert seconds < budget + 2.0, (
        seconds
    )  # the task in flight at the deadline, writing the outputs, load_config
    qa, captions, errors, summary = (read(out, n) for n in (*FINAL_FILES, SUMMARY_FILE))
    answerable = {r["task_id"] for r in records if r["task_type"] in ("qa", "captioning")}
    assert set(qa) | set(captions) == answerable
    assert all(isinstance(v, int) for v in qa.values()) and all(v.strip() for v in captions.values())
    levels = [t["level"] for t in summary["per_task"]]
    assert levels == sorted(levels) and summary["step_downs"] and summary["time_budget_s"] == budget
    assert summary["by_level"] == {str(k): levels.count(k) for k in sorted(set(levels))}
    invalid = {i for i, r in enumerate(records) if str(r["task_id"]).startswith("bad-")}
    budget_lines = [e for e in errors if e["stage"] == "budget"]
    assert {e["index"] for e in budget_lines} == {
        i for i, v in enumerate(levels) if v == FALLBACK_LEVEL
    } - invalid
    assert all(e["fallback"] for e in budget_lines)
    assert "step-down to level" in capsys.readouterr().out
    if (
        FALLBACK_LEVEL in levels
    ):  # the journal stays so that a rerun with more time answers those by the model
        assert (out / JOURNAL_FILE).is_file()
        assert run.main(["--input_path", str(tasks), "--output_dir", str(out), "--config", "tiny",
                         "--no_progress", "--set", "runtime.threads=1"]) == 0  # fmt: skip
        again = read(out, SUMMARY_FILE)
        assert FALLBACK_LEVEL not in [t["level"] for t in again["per_task"]]
        assert again["reused_from_journal"] == len(levels) - levels.count(FALLBACK_LEVEL)
        assert not (out / JOURNAL_FILE).exists()


# -- resume --------------------------------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying (not an Exception: the runner must not catch it)."""


def crash_at(monkeypatch, index: int) -> None:
    original = Runner.answer_record

    def answer_record(self, record, i, *args, **kwargs):
        if i == index:
            raise Crash
        return original(self, record, i, *args, **kwargs)

    monkeypatch.setattr(Runner, "answer_record", answer_record)


def test_resume_after_a_crash_gives_the_same_files(sample_tasks: Path, tmp_path: Path, tiny_cfg, tiny_model,
                                                   monkeypatch, capsys):  # fmt: skip
    tasks = many_tasks(sample_tasks, 2, tmp_path / "split")
    reference, out = tmp_path / "reference", tmp_path / "out"
    run_tasks(tasks, reference, tiny_cfg, progress=False, model=tiny_model)
    with monkeypatch.context() as m:
        crash_at(m, 7)
        with pytest.raises(Crash):
            run_tasks(tasks, out, tiny_cfg, progress=False, model=tiny_model)
    journal = out / JOURNAL_FILE
    assert len(journal.read_text().splitlines()) == 1 + 7 and not (out / CLASSIFICATION_FILE).exists()
    with open(journal, "ab") as f:
        f.write(b'{"index": 7, "key": "1-')  # a line torn by the kill
    result = run_tasks(tasks, out, tiny_cfg, progress=False, model=tiny_model)
    assert "reusing 7 finished task(s); ignored 23 byte(s) of an unfinished line" in capsys.readouterr().err
    assert sum(t["reused"] for t in result.tasks) == 7
    same_files(reference, out)
    assert not journal.exists()


def test_a_journal_of_other_inputs_is_not_reused(sample_tasks: Path, tmp_path: Path, tiny_cfg, tiny_model,
                                                 monkeypatch, capsys):  # fmt: skip
    tasks = many_tasks(sample_tasks, 1, tmp_path / "split")
    out = tmp_path / "out"

    def crashed_run() -> None:
        with monkeypatch.context() as m:
            crash_at(m, 4)
            with pytest.raises(Crash):
                run_tasks(tasks, out, tiny_cfg, progress=False, model=tiny_model)
        capsys.readouterr()

    crashed_run()
    other_cfg = load_config("tiny", ["generation.max_new_tokens=4"])
    result = run_tasks(tasks, out, other_cfg, progress=False, model=tiny_model)
    assert "written for other inputs" in capsys.readouterr().err and not any(
        t["reused"] for t in result.tasks
    )
    crashed_run()
    tasks.write_text(tasks.read_text().replace("bad-2", "bad-3"))  # the tasks file changed
    result = run_tasks(tasks, out, tiny_cfg, progress=False, model=tiny_model)
    assert "written for other inputs" in capsys.readouterr().err and not any(
        t["reused"] for t in result.tasks
    )
    crashed_run()
    threads_cfg = load_config("tiny", ["runtime.threads=1", "runtime.time_budget_s=5000"])  # not hashed
    result = run_tasks(tasks, out, threads_cfg, progress=False, model=tiny_model)
    assert sum(t["reused"] for t in result.tasks) == 4
    crashed_run()
    result = run_tasks(
        tasks, out, load_config("tiny", ["runtime.resume=false"]), progress=False, model=tiny_model
    )
    assert "resume disabled" in capsys.readouterr().err and not any(t["reused"] for t in result.tasks)


def test_read_journal_stops_at_the_first_bad_line(tmp_path: Path, tiny_cfg):
    tasks = tmp_path / "tasks.json"
    tasks.write_text("[1, 2, 3]")
    header = journal_header(tasks, tiny_cfg, 3)
    path = tmp_path / JOURNAL_FILE
    entry = {
        "index": 0,
        "key": "1",
        "task_type": "qa",
        "value": 0,
        "source": "model",
        "level": 0,
        "problems": [],
    }
    good = json.dumps(header) + "\n" + json.dumps(entry) + "\n"
    path.write_text(
        good + json.dumps({**entry, "index": 9}) + "\n" + json.dumps({**entry, "index": 1}) + "\n"
    )
    entries, length, _ = read_journal(path, header)
    assert list(entries) == [0] and length == len(
        good.encode()
    )  # index 9 is out of range: reading stops there
    assert read_journal(path, {**header, "tasks_sha256": "0" * 64})[:2] == ({}, 0)
    assert read_journal(tmp_path / "none.jsonl", header)[:2] == ({}, 0)


def test_sigkill_at_random_points_then_resume_gives_identical_files(sample_tasks: Path, tmp_path: Path):
    """`python run.py` killed with SIGKILL at random moments (start-up, mid-task, writing the outputs), rerun
    each time; the last rerun completes and its files equal those of an uninterrupted run, byte for byte."""
    tasks = many_tasks(sample_tasks, 5, tmp_path / "split")  # 32 tasks
    n_tasks = len(json.loads(tasks.read_text()))

    def command(out: Path) -> list[str]:
        return [sys.executable, "run.py", "--input_path", str(tasks), "--output_dir", str(out),
                "--config", "tiny", "--no_progress", "--set", "runtime.threads=1"]  # fmt: skip

    reference = tmp_path / "reference"
    done = subprocess.run(command(reference), cwd=KIT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    journal = out / JOURNAL_FILE
    rng = random.Random(20240611)
    # kill when the journal holds this many task lines (None: during start-up, before any task), then a random
    # few milliseconds later; n_tasks: every task is journalled and the outputs are being written
    points = [None, rng.randint(1, n_tasks // 3), rng.randint(n_tasks // 3, n_tasks - 1), n_tasks]
    killed_at: list[int] = []  # complete task lines in the journal after each kill

    def journal_lines() -> int:
        return max(0, journal.read_bytes().count(b"\n") - 1) if journal.exists() else 0

    for point in points:
        proc = subprocess.Popen(
            command(out), cwd=KIT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        if point is None:
            time.sleep(rng.uniform(0.5, 2.5))
        else:
            while proc.poll() is None and time.monotonic() < deadline and journal_lines() < point:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            killed_at.append(journal_lines())
        proc.wait(timeout=60)
    print(f"killed with {killed_at} of {n_tasks} tasks journalled")
    assert len(killed_at) >= 3 and any(0 < lines < n_tasks for lines in killed_at), killed_at
    before = journal_lines()
    final = subprocess.run(command(out), cwd=KIT_ROOT, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    same_files(reference, out)
    assert read(out, SUMMARY_FILE)["reused_from_journal"] == before
    assert not journal.exists()
