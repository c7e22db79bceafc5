"""The synthetic sample split: contest layout, determinism, idempotence, readable media."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from solution import sample_split
from solution.media.audio import SAMPLE_RATE, task_audio
from solution.media.video import read_frames
from solution.sample_split import make_sample_split
from solution.tasks import validation_errors

TASK_KEYS = ["task_id", "task_type", "question", "video", "audio", "choices"]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The split for seed 0, written once for the module."""
    return make_sample_split(tmp_path_factory.mktemp("sample"), seed=0)


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_layout_and_records(split: Path) -> None:
    root = split.parent
    tasks, labels = load(split), load(root / "labels.json")
    assert isinstance(tasks, list) and len(tasks) == 6
    assert [task["task_type"] for task in tasks].count("qa") == 4
    assert validation_errors("tasks", tasks, root) == []
    assert validation_errors("labels", labels, root) == []
    for task, label in zip(tasks, labels, strict=True):
        assert list(task) == TASK_KEYS
        assert {key: label[key] for key in TASK_KEYS} == task
        assert task["video"].startswith("video/") and task["video"].endswith(".mp4")
        assert task["audio"] == "" or (task["audio"].startswith("audio/") and task["audio"].endswith(".mp3"))
        if task["task_type"] == "qa":
            assert [choice["choice_id"] for choice in task["choices"]] == [0, 1, 2, 3, 4]
            answer = task["choices"][label["correct_answer_choice_id"]]["choice"]
            assert answer == label["correct_answer"]
        else:
            assert task["choices"] == [] and task["question"] == "Describe this video in detail."
            assert label["references"] and all(isinstance(text, str) for text in label["references"])
    assert any(task["audio"] == "" and task["task_type"] == "qa" for task in tasks)


def test_media_match_their_questions(split: Path) -> None:
    root = split.parent
    labels = {label["task_id"]: label for label in load(root / "labels.json")}
    square = read_frames(root / labels[1]["video"], 4)
    colour = sample_split.COLOURS[labels[1]["correct_answer"].lower()]
    centre = square.pixels[:, 60, :, :].reshape(-1, 3)  # the square crosses the middle row
    assert (np.abs(centre.astype(int) - colour).max(axis=1) < 30).sum() >= 4 * 30
    for task_id, source in [(2, "audio file"), (3, "video track")]:
        label = labels[task_id]
        audio = root / label["audio"] if label["audio"] else None
        wave, found = task_audio(audio, root / label["video"], None)
        assert found == source
        envelope = np.convolve(np.abs(wave), np.ones(400) / 400, mode="same") > 0.1  # 25 ms windows
        count = int((np.diff(envelope.astype(int)) == 1).sum() + envelope[0])  # its rising edges
        assert sample_split.COUNTS[count - 1] == label["correct_answer"]
        assert len(wave) == pytest.approx(4 * SAMPLE_RATE, abs=0.15 * SAMPLE_RATE)
    assert task_audio(None, root / labels[4]["video"], None)[0] is None


def test_every_video_is_readable(split: Path) -> None:
    for task in load(split):
        frames = read_frames(split.parent / task["video"], 8)
        assert frames.pixels.shape == (8, 120, 160, 3) and 3.0 <= frames.duration <= 6.0


def test_deterministic_and_idempotent(split: Path, tmp_path: Path) -> None:
    again = make_sample_split(tmp_path / "again", seed=0)
    media = [task[key] for task in load(split) for key in ("video", "audio") if task[key]]
    for name in ["tasks.json", "labels.json", *media]:
        assert (again.parent / name).read_bytes() == (split.parent / name).read_bytes(), name
    labels = [[task.label for task in sample_split.build_tasks(seed)] for seed in range(3)]
    assert labels[0] == load(split.parent / "labels.json") and labels[0] != labels[1] != labels[2]

    stamp = again.stat().st_mtime_ns
    assert make_sample_split(again.parent, seed=0) == again and again.stat().st_mtime_ns == stamp
    (again.parent / "video" / "beeps.mp4").unlink()  # incomplete: rebuilt
    make_sample_split(again.parent, seed=0)
    assert (again.parent / "video" / "beeps.mp4").is_file()
    make_sample_split(again.parent, seed=0, force=True)
    assert again.stat().st_mtime_ns != stamp


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_split.main(["--out", str(tmp_path / "cli"), "--seed", "3"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli" / "tasks.json")
    assert len(load(tmp_path / "cli" / "tasks.json")) == 6
