"""Task records: schemas, parse_task, load_task_file, duplicate checks, document validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from solution.errors import TaskError, TaskFileError
from solution.tasks import (
    SCHEMA_FILES,
    TASK_TYPES,
    Choice,
    Task,
    check_unique_ids,
    json_path,
    load_schema,
    load_task_file,
    parse_task,
    prediction_errors,
    prediction_kind,
    resolve_media,
    validation_errors,
)

# The two example records of CONTEST.md, verbatim.
QA: dict[str, Any] = {
    "task_id": 1,
    "task_type": "qa",
    "question": "How did the woman emotionally act in response to the ringing of her mobile phone?",
    "video": "video/xxx.mp4",
    "audio": "audio/xxx.mp3",
    "choices": [
        {"choice_id": 0, "choice": "She was happy"},
        {"choice_id": 1, "choice": "She was upset"},
        {"choice_id": 2, "choice": "She was angry"},
        {"choice_id": 3, "choice": "She was irritated"},
        {"choice_id": 4, "choice": "Not enough information to answer"},
    ],
}
CAPTION: dict[str, Any] = {
    "task_id": 2,
    "task_type": "captioning",
    "question": "Describe this video in detail.",
    "video": "video/yyy.mp4",
    "audio": "",
    "choices": [],
}
ROOT = Path("/data/contest")


def qa(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(QA)
    record.update(changes)
    return record


def caption(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(CAPTION)
    record.update(changes)
    return record


def without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def parse_error(record: Any, index: int = 0) -> str:
    with pytest.raises(TaskError) as info:
        parse_task(record, index, ROOT)
    return str(info.value)


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize("kind", list(SCHEMA_FILES))
def test_schemas_are_valid_draft_2020_12(kind: str) -> None:
    schema = load_schema(kind)  # type: ignore[arg-type]
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(SCHEMA_FILES[kind])
    assert schema["title"] and schema["description"]


def test_task_types_match_schema() -> None:
    assert tuple(load_schema("tasks")["$defs"]["task"]["properties"]["task_type"]["enum"]) == TASK_TYPES


def test_load_schema_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="tasks, labels, predictions"):
        load_schema("nope")  # type: ignore[arg-type]


# ---------------------------------------------------------------- parse_task: accepted records


def test_contest_qa_example_parses() -> None:
    task = parse_task(qa(), 0, ROOT)
    assert task == Task(
        task_id=1,
        task_type="qa",
        question=QA["question"],
        video=ROOT / "video/xxx.mp4",
        audio=ROOT / "audio/xxx.mp3",
        choices=tuple(Choice(c["choice_id"], c["choice"]) for c in QA["choices"]),
        index=0,
        raw=QA,
    )
    assert task.key == "1"
    assert task.raw == QA


def test_contest_captioning_example_parses() -> None:
    task = parse_task(caption(), 7, ROOT)
    assert (task.task_type, task.choices, task.index, task.audio) == ("captioning", (), 7, None)
    assert task.video == ROOT / "video/yyy.mp4"


@pytest.mark.parametrize("task_id", [0, -3, "abc", "17"])
def test_task_id_integer_or_non_empty_string(task_id: int | str) -> None:
    task = parse_task(qa(task_id=task_id), 0, ROOT)
    assert task.task_id == task_id
    assert task.key == str(task_id)


def test_older_revision_choice_ids_1_to_5_and_extra_keys_accepted() -> None:
    record = qa(choices=[{"choice_id": i, "choice": f"option {i}"} for i in range(1, 6)], category="emotion")
    task = parse_task(record, 0, ROOT)
    assert [c.choice_id for c in task.choices] == [1, 2, 3, 4, 5]


def test_task_is_hashable_despite_raw_dict() -> None:
    assert hash(parse_task(qa(), 0, ROOT)) == hash(parse_task(qa(), 0, ROOT))


# ---------------------------------------------------------------- media paths


def test_relative_media_resolved_against_root(tmp_path: Path) -> None:
    task = parse_task(qa(video="clips/../video/a.mp4"), 0, tmp_path)
    assert task.video == tmp_path / "video/a.mp4"
    assert task.video is not None and task.video.is_absolute()


def test_relative_root_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    task = parse_task(qa(), 0, Path("data"))
    assert task.video == tmp_path / "data/video/xxx.mp4"


def test_absolute_media_kept() -> None:
    task = parse_task(qa(video="/media/v.mp4", audio="/media/a.mp3"), 0, ROOT)
    assert (task.video, task.audio) == (Path("/media/v.mp4"), Path("/media/a.mp3"))


def test_empty_media_is_none() -> None:
    task = parse_task(qa(video="", audio=""), 0, ROOT)
    assert (task.video, task.audio) == (None, None)
    assert resolve_media("", ROOT) is None


# ---------------------------------------------------------------- parse_task: rejected records


@pytest.mark.parametrize("key", ["task_id", "task_type", "question", "video", "audio", "choices"])
def test_missing_key_rejected_with_path(key: str) -> None:
    message = parse_error(without(qa(), key), index=3)
    assert f"$[3].{key}: missing required key" in message
    assert "index 3" in message


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"task_id": 1.5}, "$[0].task_id: expected integer or string, got number 1.5"),
        ({"task_id": 2.0}, "$[0].task_id: expected integer or string, got number 2.0"),
        ({"task_id": True}, "$[0].task_id: expected integer or string, got boolean true"),
        ({"task_id": ""}, "$[0].task_id: expected a non-empty string"),
        ({"task_type": "QA"}, '$[0].task_type: expected one of "qa", "captioning", got "QA"'),
        ({"question": ""}, "$[0].question: expected a non-empty string"),
        ({"question": 5}, "$[0].question: expected string, got integer 5"),
        ({"video": None}, "$[0].video: expected string, got null null"),
        ({"audio": ["a.mp3"]}, "$[0].audio: expected string, got array"),
        ({"choices": {}}, "$[0].choices: expected array, got object"),
        ({"choices": []}, "$[0].choices: expected at least 2 item(s), got 0"),
        (
            {"choices": [{"choice_id": 0, "choice": "only"}]},
            "$[0].choices: expected at least 2 item(s), got 1",
        ),
    ],
)
def test_wrong_values_rejected_with_path(changes: dict[str, Any], line: str) -> None:
    assert line in parse_error(qa(**changes))


def test_choice_fields_checked_with_path() -> None:
    record = qa()
    record["choices"][1] = {"choice_id": "1", "choice": "x"}
    record["choices"][3] = {"choice_id": 3}
    record["choices"][4] = "four"
    message = parse_error(record, index=2)
    assert '$[2].choices[1].choice_id: expected integer, got string "1"' in message
    assert "$[2].choices[3].choice: missing required key" in message
    assert "$[2].choices[4]: expected object, got string" in message


def test_duplicate_choice_ids_rejected() -> None:
    record = qa()
    record["choices"][4]["choice_id"] = 1
    message = parse_error(record)
    assert "$[0].choices[4].choice_id: duplicate choice_id 1 (also at $[0].choices[1].choice_id)" in message


def test_captioning_may_have_no_choices_but_qa_may_not() -> None:
    parse_task(caption(choices=[]), 0, ROOT)
    assert "$[0].choices: expected at least 2" in parse_error(caption(task_type="qa"))


def test_all_violations_reported_with_task_id() -> None:
    message = parse_error(qa(task_id="t9", question="", task_type="vqa", audio=3), index=4)
    assert message.startswith('invalid task record at index 4 (task_id "t9"):')
    for path in ("$[4].question", "$[4].task_type", "$[4].audio"):
        assert path in message


@pytest.mark.parametrize("record", [[QA], "task", 3, None])
def test_non_object_record_rejected(record: Any) -> None:
    message = parse_error(record, index=5)
    assert "$[5]: expected object" in message
    assert "(task_id" not in message


# ---------------------------------------------------------------- load_task_file


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_task_file_reads_list(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.json", json.dumps([QA, CAPTION]))
    assert load_task_file(path) == [QA, CAPTION]


def test_load_task_file_accepts_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([QA]).encode())
    assert load_task_file(path) == [QA]


def test_load_task_file_keeps_invalid_records_for_parse_task(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.json", '[1, {"task_id": 2}]')
    assert load_task_file(path) == [1, {"task_id": 2}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"task_id": 1}', r"\$: expected a JSON array of task records, got object"),
        ('"tasks"', "got string"),
        ("[1, 2", "not valid JSON: .* line 1 column"),
        ("", "not valid JSON"),
        ("[NaN]", "NaN is not a JSON value"),
    ],
)
def test_load_task_file_rejects_bad_content(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "tasks.json", text)
    with pytest.raises(TaskFileError, match=expected) as info:
        load_task_file(path)
    assert str(path) in str(info.value)


def test_load_task_file_missing(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="no such file"):
        load_task_file(tmp_path / "absent.json")


def test_load_task_file_folder(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="is a folder"):
        load_task_file(tmp_path)


def test_load_task_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(b'["\xff"]')
    with pytest.raises(TaskFileError, match="not UTF-8"):
        load_task_file(path)


def test_load_task_file_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("solution.tasks.MAX_FILE_BYTES", 10)
    path = write(tmp_path / "tasks.json", json.dumps([QA]))
    with pytest.raises(TaskFileError, match="larger than"):
        load_task_file(path)


# ---------------------------------------------------------------- duplicate task ids


def test_unique_ids_pass() -> None:
    assert check_unique_ids([qa(), caption()]) == []


def test_duplicate_task_ids_name_both_positions() -> None:
    problems = check_unique_ids([qa(), caption(), qa(task_id=2), "junk", qa(task_id="1")])
    assert problems == [
        "$[2].task_id: duplicate task_id 2: output key '2' is already used by $[1].task_id",
        "$[4].task_id: duplicate task_id \"1\": output key '1' is already used by $[0].task_id",
    ]


def test_duplicate_ids_of_parsed_tasks() -> None:
    tasks = [parse_task(qa(), 0, ROOT), parse_task(qa(), 5, ROOT)]
    assert check_unique_ids(tasks) == [
        "$[5].task_id: duplicate task_id 1: output key '1' is already used by $[0].task_id"
    ]


# ---------------------------------------------------------------- validation_errors: tasks and labels


def test_valid_tasks_document() -> None:
    assert validation_errors("tasks", [QA, CAPTION]) == []
    assert validation_errors("tasks", []) == []


def test_tasks_document_not_a_list() -> None:
    assert validation_errors("tasks", {"0": QA}) == ["$: expected a JSON array of task records, got object"]


def test_tasks_document_collects_everything_in_file_order() -> None:
    dup_choice = qa(task_id=3)
    dup_choice["choices"][2]["choice_id"] = 0
    document = [qa(), without(caption(), "question"), dup_choice, caption(task_id=1), 7]
    assert validation_errors("tasks", document) == [
        "$[1].question: missing required key",
        "$[2].choices[2].choice_id: duplicate choice_id 0 (also at $[2].choices[0].choice_id)",
        "$[3].task_id: duplicate task_id 1: output key '1' is already used by $[0].task_id",
        "$[4]: expected object, got integer 7",
    ]


def test_media_existence_checked_relative_to_root(tmp_path: Path) -> None:
    (tmp_path / "video").mkdir()
    (tmp_path / "video/xxx.mp4").write_bytes(b"")
    document = [qa(), caption(video=str(tmp_path / "video/xxx.mp4"))]
    assert validation_errors("tasks", document) == []  # no root: no media check
    assert validation_errors("tasks", document, tmp_path) == [
        f"$[0].audio: media file not found: {tmp_path / 'audio/xxx.mp3'}"
    ]


def test_valid_labels() -> None:
    labels = [
        qa(correct_answer_choice_id=1, correct_answer="She was upset", category="video-audio-qa"),
        caption(references=["A man talks.", "Someone speaks."]),
        caption(task_id=3, correct_answer="A woman laughs."),
    ]
    assert validation_errors("labels", labels) == []


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (qa(), "$[0].correct_answer_choice_id: missing required key"),
        (qa(correct_answer_choice_id="1"), '$[0].correct_answer_choice_id: expected integer, got string "1"'),
        (
            qa(correct_answer_choice_id=9),
            "$[0].correct_answer_choice_id: 9 is not one of the record's choice ids",
        ),
        (qa(correct_answer_choice_id=1, correct_answer=1), "$[0].correct_answer: expected string"),
        (caption(), "$[0].correct_answer: missing required key"),
        (caption(references=[]), "$[0].references: expected at least 1 item(s), got 0"),
        (caption(references=["ok", ""]), "$[0].references[1]: expected a non-empty string"),
        (caption(references="a caption"), "$[0].references: expected array, got string"),
        (caption(correct_answer=""), "$[0].correct_answer: expected a non-empty string"),
        (caption(references=["x"], category=3), "$[0].category: expected string, got integer 3"),
        (caption(task_type="story", references=["x"]), '$[0].task_type: expected one of "qa", "captioning"'),
    ],
)
def test_invalid_labels(record: dict[str, Any], line: str) -> None:
    problems = validation_errors("labels", [record])
    assert any(problem.startswith(line) for problem in problems), problems


def test_validation_errors_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown document kind"):
        validation_errors("answers", [])  # type: ignore[arg-type]


# ---------------------------------------------------------------- predictions


def test_prediction_kind_detection() -> None:
    assert prediction_kind({"1": 0, "2": 4}) == "classification"
    assert prediction_kind({"2": "A man talks."}) == "generative"
    assert prediction_kind({"1": 0, "2": "x"}) is None
    assert prediction_kind({}) is None


def test_valid_predictions() -> None:
    assert validation_errors("predictions", {"1": 0, "7": 4}) == []
    assert validation_errors("predictions", {"2": "A man talks.", "3": ""}) == []
    assert validation_errors("predictions", {}) == []


@pytest.mark.parametrize(
    ("document", "line"),
    [
        ([0, 1], "$: expected a JSON object mapping task keys to answers, got array"),
        ({"1": 0, "2": 1.0}, '$["2"]: expected integer, got number 1.0'),
        ({"1": 0, "2": None}, '$["2"]: expected integer, got null null'),
        ({"1": 0, "2": True}, '$["2"]: expected integer, got boolean true'),
        ({"1": 0, "": 1}, '$: invalid key "": expected a non-empty string'),
        ({"a": ["x"], "b": "y", "c": "z"}, '$.a: expected string, got array ["x"]'),
        ({"1": 0, "2": 1, "3": "x"}, "$: mixed answer types (1 string(s), 2 other)"),
        ({"1": 0, "2": 1, "3": "x"}, '$["3"]: expected integer, got string "x"'),
    ],
)
def test_invalid_predictions(document: Any, line: str) -> None:
    problems = validation_errors("predictions", document)
    assert any(problem.startswith(line) for problem in problems), problems


def test_predictions_of_expected_kind() -> None:
    assert prediction_errors({"1": "cat"}, "classification") == ['$["1"]: expected integer, got string "cat"']
    assert prediction_errors({"1": 2}, "generative") == ['$["1"]: expected string, got integer 2']


def test_json_path_format() -> None:
    assert json_path([3, "choices", 1, "choice_id"]) == "$[3].choices[1].choice_id"
    assert json_path(["12", "a b", "ok_1"]) == '$["12"]["a b"].ok_1'
