"""The validator CLI: `python -m solution.validate KIND FILE...` through main(argv)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from solution.validate import main

QA = {
    "task_id": 1,
    "task_type": "qa",
    "question": "How did the woman react?",
    "video": "video/a.mp4",
    "audio": "",
    "choices": [{"choice_id": i, "choice": f"option {i}"} for i in range(5)],
}
CAPTION = {
    "task_id": 2,
    "task_type": "captioning",
    "question": "Describe this video in detail.",
    "video": "video/a.mp4",
    "audio": "audio/a.mp3",
    "choices": [],
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A folder in the contest layout with the media files the records name."""
    (tmp_path / "video").mkdir()
    (tmp_path / "audio").mkdir()
    (tmp_path / "video/a.mp4").write_bytes(b"")
    (tmp_path / "audio/a.mp3").write_bytes(b"")
    return tmp_path


def write_json(path: Path, document: Any) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_valid_tasks_file(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(dataset / "tasks.json", [QA, CAPTION])
    assert main(["tasks", path]) == 0
    out = capsys.readouterr().out
    assert out == f"OK {path}: tasks file, 2 record(s) (1 captioning, 1 qa)\n"


def test_invalid_tasks_file_lists_every_violation(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_choice = dict(
        QA, task_id=3, choices=[{"choice_id": 0, "choice": "a"}, {"choice_id": "1", "choice": "b"}]
    )
    path = write_json(dataset / "tasks.json", [QA, dict(CAPTION, task_id=1), bad_choice])
    assert main(["tasks", path]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: $[1].task_id: duplicate task_id 1: output key '1' is already used by $[0].task_id",
        f'{path}: $[2].choices[1].choice_id: expected integer, got string "1"',
        f"FAILED {path}: 2 problem(s)",
    ]


def test_missing_media_reported_unless_skipped(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(dataset / "tasks.json", [dict(QA, video="video/missing.mp4")])
    assert main(["tasks", path]) == 1
    assert f"$[0].video: media file not found: {dataset / 'video/missing.mp4'}" in capsys.readouterr().out
    assert main(["tasks", "--skip-media", path]) == 0


def test_labels_file(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_json(
        dataset / "labels.json", [dict(QA, correct_answer_choice_id=2), dict(CAPTION, references=["x"])]
    )
    bad = write_json(dataset / "bad_labels.json", [QA])
    assert main(["labels", good]) == 0
    assert main(["labels", good, bad]) == 1
    out = capsys.readouterr().out
    assert f"OK {good}: labels file, 2 record(s)" in out
    assert f"{bad}: $[0].correct_answer_choice_id: missing required key" in out


def test_predictions_kind_detected_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cls = write_json(tmp_path / "a.json", {"1": 0, "3": 4})
    gen = write_json(tmp_path / "b.json", {"2": "A woman laughs."})
    assert main(["predictions", cls, gen]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"OK {cls}: classification predictions, 2 answer(s)",
        f"OK {gen}: generative predictions, 1 answer(s)",
    ]


def test_mixed_predictions_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "p.json", {"1": 0, "2": 3, "3": "B"})
    assert main(["predictions", path]) == 1
    out = capsys.readouterr().out
    assert f"{path}: $: mixed answer types" in out
    assert f'{path}: $["3"]: expected integer, got string "B"' in out


def test_prediction_file_name_fixes_its_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "for_classification_metric.json", {"1": "She was upset"})
    assert main(["predictions", path]) == 1
    assert f'{path}: $["1"]: expected integer, got string "She was upset"' in capsys.readouterr().out
    path = write_json(tmp_path / "for_generative_metric.json", {})
    assert main(["predictions", path]) == 0
    assert "generative predictions, 0 answer(s)" in capsys.readouterr().out


def test_predictions_not_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "p.json", [0, 1])
    assert main(["predictions", path]) == 1
    assert "$: expected a JSON object mapping task keys to answers, got array" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["[1, 2", "not json"])
def test_unparsable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(content, encoding="utf-8")
    assert main(["tasks", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"tasks file {path}: not valid JSON" in err


def test_missing_file_exits_2_and_others_still_checked(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_json(dataset / "bad.json", [dict(QA, question="")])
    missing = dataset / "absent.json"
    assert main(["tasks", str(missing), bad]) == 2
    captured = capsys.readouterr()
    assert f"tasks file {missing}: no such file" in captured.err
    assert f"{bad}: $[0].question: expected a non-empty string" in captured.out


def test_tasks_file_not_a_list_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "tasks.json", {"task_id": 1})
    assert main(["tasks", path]) == 1
    assert f"{path}: $: expected a JSON array of task records, got object" in capsys.readouterr().out


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["answers", "x.json"])
    assert info.value.code == 2
