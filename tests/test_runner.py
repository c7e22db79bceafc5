"""The main job end to end on the tiny preset: outputs, keys, fallbacks, errors.json, exit codes, run.sh."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from solution import KIT_ROOT, validate
from solution.config import load_config
from solution.outputs import CLASSIFICATION_FILE, ERRORS_FILE, GENERATIVE_FILE, SUMMARY_FILE
from solution.runner import Runner

sys.path.insert(0, str(KIT_ROOT))
import run  # noqa: E402  (the contest entry point at the kit root)


def read(out: Path, name: str):
    return json.loads((out / name).read_text())


def test_run_py_end_to_end_on_the_sample_split(sample_tasks: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert (
        run.main(
            ["--input_path", str(sample_tasks), "--output_dir", str(out), "--config", "tiny", "--no_progress"]
        )
        == 0
    )
    tasks = json.loads(sample_tasks.read_text())
    qa, captions = read(out, CLASSIFICATION_FILE), read(out, GENERATIVE_FILE)
    assert set(qa) == {str(t["task_id"]) for t in tasks if t["task_type"] == "qa"}
    assert set(captions) == {str(t["task_id"]) for t in tasks if t["task_type"] == "captioning"}
    for t in tasks:
        if t["task_type"] == "qa":
            assert qa[str(t["task_id"])] in {c["choice_id"] for c in t["choices"]}
        else:
            assert isinstance(captions[str(t["task_id"])], str) and captions[str(t["task_id"])].strip()
    assert read(out, ERRORS_FILE) == []
    summary = read(out, SUMMARY_FILE)
    assert summary["tasks"] == len(tasks) and summary["by_source"] == {"model": len(tasks)}
    assert summary["mean_seconds_per_task"] > 0 and set(summary["stage_seconds_per_task"]) == {
        "decode",
        "encoders",
        "fusion",
        "llm",
    }
    assert validate.main(["predictions", str(out / CLASSIFICATION_FILE), str(out / GENERATIVE_FILE)]) == 0
    printed = capsys.readouterr().out
    assert "Mean seconds per task" in printed and "0 fallbacks" in printed


def test_positional_keying(sample_tasks: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert run.main(["--input_path", str(sample_tasks), "--output_dir", str(out), "--config", "tiny",
                     "--keying", "position", "--no_progress"]) == 0  # fmt: skip
    tasks = json.loads(sample_tasks.read_text())
    keys = set(read(out, CLASSIFICATION_FILE)) | set(read(out, GENERATIVE_FILE))
    assert keys == {str(i) for i in range(len(tasks))}


def broken_split(sample_tasks: Path, tmp_path: Path) -> Path:
    """The sample split plus bad tasks: corrupt video, missing files, malformed records."""
    split = tmp_path / "split"
    shutil.copytree(sample_tasks.parent, split)
    tasks = json.loads((split / "tasks.json").read_text())
    good_qa = next(t for t in tasks if t["task_type"] == "qa")
    (split / "video" / "corrupt.mp4").write_bytes(os.urandom(4096))
    tasks += [
        {
            **good_qa,
            "task_id": 101,
            "video": "video/corrupt.mp4",
        },  # unreadable video: answered from audio+text
        {
            **good_qa,
            "task_id": 102,
            "video": "video/missing.mp4",
            "audio": "audio/missing.mp3",
        },  # nothing readable
        {**good_qa, "task_id": 103, "question": ""},  # malformed: empty question
        {
            "task_id": 104,
            "task_type": "qa",
            "choices": [{"choice_id": 3, "choice": "x"}],
        },  # malformed: keys missing
        {**good_qa, "task_id": 105, "task_type": "ranking"},  # unknown type: no file takes it
        {**good_qa, "task_id": None},  # no usable task_id: answered under its position
        "not a record",
    ]
    (split / "tasks.json").write_text(json.dumps(tasks))
    return split / "tasks.json"


def test_bad_tasks_get_fallbacks_and_the_others_model_answers(sample_tasks: Path, tmp_path: Path):
    tasks_path = broken_split(sample_tasks, tmp_path)
    out = tmp_path / "out"
    assert (
        run.main(
            ["--input_path", str(tasks_path), "--output_dir", str(out), "--config", "tiny", "--no_progress"]
        )
        == 0
    )
    qa, errors = read(out, CLASSIFICATION_FILE), read(out, ERRORS_FILE)
    by_key = {}
    for e in errors:
        by_key.setdefault(e["task_id"], []).append(e)
    assert {e["stage"] for e in by_key["101"]} == {"video"} and not by_key["101"][0]["fallback"]
    assert {e["stage"] for e in by_key["102"]} == {"video", "audio"}
    assert "missing.mp4" in by_key["102"][0]["reason"]
    assert by_key["103"][0]["fallback"] and "question" in by_key["103"][0]["reason"]
    assert qa["103"] == 0 and qa["104"] == 3  # fallback: the first valid choice_id of the record
    assert "105" not in qa and "neither 'qa' nor 'captioning'" in by_key["105"][-1]["reason"]
    n_original = len(json.loads((sample_tasks).read_text()))
    assert str(n_original + 5) in qa  # the record without task_id, keyed by its position
    summary = read(out, SUMMARY_FILE)
    assert summary["by_source"]["model"] == n_original  # every good task still answered by the model
    assert summary["by_source"]["degraded"] == 2  # 101 and 102: the model answered without the broken media
    assert validate.main(["predictions", str(out / CLASSIFICATION_FILE)]) == 0


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_model_error_in_one_task_costs_only_that_task(
    sample_tasks: Path, tiny_model, batch_size, monkeypatch
):
    records = json.loads(sample_tasks.read_text())
    runner = Runner(tiny_model, load_config("tiny", [f"runtime.batch_size={batch_size}"]))
    original, original_batch = tiny_model.answer, tiny_model.answer_batch

    def flaky(task, prefix):
        if task.index == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(task, prefix)

    def flaky_batch(tasks, prefixes, mode="full"):  # the batch holding task 1 fails; alone, only task 1 does
        if any(task.index == 1 for task in tasks):
            raise RuntimeError("CUDA out of memory (simulated)")
        return original_batch(tasks, prefixes, mode=mode)

    monkeypatch.setattr(tiny_model, "answer", flaky)
    monkeypatch.setattr(tiny_model, "answer_batch", flaky_batch)
    result = runner.run(records, sample_tasks.parent, progress=False)
    assert [e["stage"] for e in result.errors] == ["model"] and "out of memory" in result.errors[0]["reason"]
    assert result.qa[str(records[1]["task_id"])] == records[1]["choices"][0]["choice_id"]
    assert [t["source"] for t in result.tasks].count("model") == len(records) - 1


@pytest.mark.parametrize("content, message", [("{not json", "not valid JSON"), ('{"a": 1}', "list")])
def test_unusable_tasks_file_exits_2(tmp_path: Path, capsys, content, message):
    path = tmp_path / "tasks.json"
    path.write_text(content)
    assert (
        run.main(["--input_path", str(path), "--output_dir", str(tmp_path / "out"), "--config", "tiny"]) == 2
    )
    assert str(path) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_tasks_file_and_bad_config_exit_2(tmp_path: Path, capsys):
    assert run.main(["--input_path", str(tmp_path / "nope.json"), "--config", "tiny"]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert (
        run.main(["--input_path", str(tmp_path / "nope.json"), "--config", "tiny", "--set", "fusion.dpeth=2"])
        == 2
    )
    assert "dpeth" in capsys.readouterr().err


def test_model_that_cannot_be_built_still_answers_every_task(sample_tasks: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = run.main(["--input_path", str(sample_tasks), "--output_dir", str(out), "--config", "tiny", "--no_progress",
                     "--set", "llm.kind=hf", "--set", f"llm.path={tmp_path / 'no-such-llm'}"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "no-such-llm" in err and "config.json" in err
    tasks = json.loads(sample_tasks.read_text())
    answered = set(read(out, CLASSIFICATION_FILE)) | set(read(out, GENERATIVE_FILE))
    assert answered == {str(t["task_id"]) for t in tasks}
    assert all(e["fallback"] and e["stage"] == "model" for e in read(out, ERRORS_FILE))


def test_run_sh_end_to_end(sample_tasks: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(KIT_ROOT / "run.sh"), "--input_path", str(sample_tasks), "--output_dir", str(out),
         "--config", "tiny", "--no_progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Answered 6 tasks" in proc.stdout
    assert len(read(out, CLASSIFICATION_FILE)) == 4 and len(read(out, GENERATIVE_FILE)) == 2
