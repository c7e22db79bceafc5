"""Fault injection: broken media, hostile paths and malformed records, each with its expected outcome.

One run of `run.py --config tiny` answers a tasks file that holds every case of CASES (docs/faults.md lists
them); each case then checks its own answer, where it came from (model, degraded: answered without a medium or
with text cut, fallback) and its errors.json lines. Every valid task gets a model answer, every invalid one a
well-typed fallback and an errors.json line, and the process exits 0. Variants (allowed media roots), a
10,000-task file, unusable tasks files, the 2-hour clip's memory and the safe-loading rules have tests of
their own.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from solution import KIT_ROOT
from solution.media.video import read_frames
from solution.model import Answer
from solution.outputs import CLASSIFICATION_FILE, ERRORS_FILE, GENERATIVE_FILE, SUMMARY_FILE
from solution.runner import clip_middle, run_tasks

sys.path.insert(0, str(KIT_ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import fault_media  # noqa: E402

import run  # noqa: E402

SPLIT_NAME = "tasks dir ü 😀"  # the tasks folder's own name has a space and non-ASCII characters
LONG_QUESTION = "Why " + "does the man in the grey coat keep looking at the door " * 364 + "at the end?"
VALID = "valid"  # expected answer: a model answer of the right type (a choice id of the record, or a caption)


@dataclass(frozen=True)
class Paths:
    split: Path  # the tasks file's folder
    outside: Path  # a sibling folder the records must not reach


@dataclass(frozen=True)
class Case:
    """One fault and its expected outcome (docs/faults.md says what the kit does with each)."""

    name: str
    record: Callable[[Paths], Any]  # the record, given where the files are
    source: str  # model | degraded | fallback (per_task "source" of run_summary.json)
    stages: frozenset[str] = frozenset()  # the stages of its errors.json lines, exactly
    reason: str = ""  # a piece of text its errors.json lines must contain
    answer: Any = VALID  # VALID, an exact fallback value, or None: no answer in either output file


def qa(task_id: Any, video: str = "video/good.mp4", audio: str = "", **extra: Any) -> dict[str, Any]:
    choices = [{"choice_id": 0, "choice": "A red square"}, {"choice_id": 1, "choice": "A blue circle"},
               {"choice_id": 2, "choice": "Nothing"}]  # fmt: skip
    record = {"task_id": task_id, "task_type": "qa", "question": "What moves across the picture?",
              "video": video, "audio": audio, "choices": choices}  # fmt: skip
    return {**record, **extra}


def caption(task_id: Any, video: str = "video/good.mp4", audio: str = "") -> dict[str, Any]:
    return {"task_id": task_id, "task_type": "captioning", "question": "Describe this video in detail.",
            "video": video, "audio": audio, "choices": []}  # fmt: skip


def without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def options(ids: range) -> list[dict[str, Any]]:
    return [{"choice_id": i, "choice": f"Option {i}"} for i in ids]


F = frozenset
CASES = [
    # -- media files
    Case("baseline_qa", lambda p: qa("baseline_qa", audio="audio/good.mp3"), "model"),
    Case("baseline_caption", lambda p: caption("baseline_caption"), "model"),
    Case("truncated_mp4", lambda p: qa("truncated_mp4", "video/truncated.mp4"),
         "degraded", F({"video"}), "truncated.mp4: cannot read video frames"),
    Case("zero_byte_file", lambda p: qa("zero_byte_file", "video/zero.mp4"),
         "degraded", F({"video"}), "zero.mp4: cannot read video frames"),
    Case("renamed_non_video", lambda p: caption("renamed_non_video", "video/notes.mp4"),
         "degraded", F({"video"}), "notes.mp4: cannot read video frames"),
    Case("mp4_without_audio", lambda p: qa("mp4_without_audio", "video/silent.mp4"), "model"),
    Case("audio_file_without_sound", lambda p: qa("audio_file_without_sound", audio="video/silent.mp4"),
         "degraded", F({"audio"}), "no audio stream"),
    Case("audio_only_mp4", lambda p: qa("audio_only_mp4", "video/audio_only.mp4"),
         "degraded", F({"video"}), "no video stream"),
    Case("frames_4k", lambda p: caption("frames_4k", "video/4k.mp4"), "model"),
    Case("two_hour_clip", lambda p: qa("two_hour_clip", "video/two_hours.mp4"), "model"),
    Case("broken_middle", lambda p: qa("broken_middle", "video/broken_middle.mp4"), "model"),
    Case("missing_files", lambda p: qa("missing_files", "video/gone.mp4", "audio/gone.mp3"),
         "degraded", F({"video", "audio"}), "gone.mp4: video file not found"),
    # -- paths
    Case("spaces_and_unicode_path", lambda p: qa("spaces_and_unicode_path", "video/my clip ü 😀.mp4"),
         "model"),
    Case("absolute_path_inside", lambda p: qa("absolute_path_inside", str(p.split / "video/good.mp4")),
         "model"),
    Case("path_escaping_folder", lambda p: qa("path_escaping_folder", "../outside/outside.mp4"),
         "degraded", F({"video"}), "outside.mp4: outside the tasks folder"),
    Case("absolute_path_outside", lambda p: qa("absolute_path_outside", str(p.outside / "outside.mp4")),
         "degraded", F({"video"}), "outside.mp4: outside the tasks folder"),
    Case("audio_escaping_folder", lambda p: qa("audio_escaping_folder", audio="../outside/outside.mp3"),
         "degraded", F({"audio"}), "outside.mp3: outside the tasks folder"),
    Case("symlink_inside", lambda p: qa("symlink_inside", "video/link_inside.mp4"), "model"),
    Case("symlink_to_outside", lambda p: qa("symlink_to_outside", "video/link_outside.mp4"),
         "degraded", F({"video"}), "resolves to"),
    # -- records
    Case("wrong_json_types", lambda p: qa("wrong_json_types", question=42, choices={"0": "yes"}),
         "fallback", F({"record"}), "].question: expected string, got integer 42", 0),
    Case("choice_id_as_string",
         lambda p: qa("choice_id_as_string", choices=[{"choice_id": "1", "choice": "a"},
                                                      {"choice_id": 2, "choice": "b"}]),
         "fallback", F({"record"}), "choices[0].choice_id: expected integer", 2),
    Case("record_not_an_object", lambda p: ["qa", "What?"],
         "fallback", F({"record"}), "expected object", None),
    Case("float_task_id", lambda p: qa(1.5), "fallback", F({"record"}), "answered under its position", 0),
    Case("missing_keys", lambda p: without(qa("missing_keys"), "video", "question"),
         "fallback", F({"record"}), "].video: missing required key", 0),
    Case("extra_keys", lambda p: qa("extra_keys", correct_answer_choice_id=0, notes={"by": ["someone"]}),
         "model"),
    Case("duplicate_task_id_first", lambda p: qa("duplicate"), "model"),
    Case("duplicate_task_id_second", lambda p: qa("duplicate", "video/silent.mp4"),
         "model", F({"record"}), "duplicate key 'duplicate'"),
    Case("empty_choices_qa", lambda p: qa("empty_choices_qa", choices=[]),
         "fallback", F({"record"}), "expected at least 2 item(s), got 0", 0),
    Case("six_options", lambda p: qa("six_options", choices=options(range(6))), "model"),
    Case("choice_ids_1_to_5", lambda p: qa("choice_ids_1_to_5", choices=options(range(1, 6))), "model"),
    Case("unknown_task_type", lambda p: qa("unknown_task_type", task_type="ranking"),
         "fallback", F({"record"}), "neither 'qa' nor 'captioning'", None),
    Case("empty_question", lambda p: qa("empty_question", question=""),
         "fallback", F({"record"}), "question: expected a non-empty string", 0),
    Case("very_long_question", lambda p: qa("very_long_question", question=LONG_QUESTION),
         "degraded", F({"text"}), "cut to 2000"),
    Case("non_latin_and_emoji", lambda p: qa("задача-题-😀", question="Что происходит? 这是什么？ 🤔",
                                             choices=[{"choice_id": 0, "choice": "Радость 😀"},
                                                      {"choice_id": 1, "choice": "悲伤 😢"}]), "model"),
    Case("lone_surrogate_task_id", lambda p: caption("id-\ud800"), "model"),
]  # fmt: skip
INDEX = {case.name: i for i, case in enumerate(CASES)}


def make_media(paths: Paths) -> None:
    video, audio = paths.split / "video", paths.split / "audio"
    video.mkdir(parents=True)
    audio.mkdir()
    paths.outside.mkdir()
    good = fault_media.good_clip(video / "good.mp4")
    fault_media.synth.write_audio(audio / "good.mp3", fault_media.synth.tone(550, 2.0))
    fault_media.truncated(good, video / "truncated.mp4")
    (video / "zero.mp4").write_bytes(b"")
    (video / "notes.mp4").write_text("meeting notes, not a video\n" * 40)
    fault_media.silent_clip(video / "silent.mp4")
    fault_media.audio_only_mp4(video / "audio_only.mp4")
    fault_media.clip_4k(video / "4k.mp4")
    fault_media.long_clip(video / "two_hours.mp4")
    fault_media.broken_middle(
        fault_media.good_clip(paths.split / "six.mp4", seconds=6), video / "broken_middle.mp4"
    )
    (video / "my clip ü 😀.mp4").write_bytes(good.read_bytes())
    fault_media.good_clip(paths.outside / "outside.mp4")
    fault_media.synth.write_audio(paths.outside / "outside.mp3", fault_media.synth.tone(550, 1.0))
    (video / "link_inside.mp4").symlink_to(good)
    (video / "link_outside.mp4").symlink_to(paths.outside / "outside.mp4")


@dataclass
class FaultRun:
    code: int
    paths: Paths
    out: Path
    qa: dict[str, int]
    captions: dict[str, str]
    errors: list[dict[str, Any]]
    summary: dict[str, Any]
    records: list[Any]
    seconds: float
    printed: str  # run.py's stdout


def read_outputs(out: Path) -> tuple[dict, dict, list, dict]:
    return tuple(json.loads((out / name).read_text()) for name in
                 (CLASSIFICATION_FILE, GENERATIVE_FILE, ERRORS_FILE, SUMMARY_FILE))  # fmt: skip


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory) -> FaultRun:
    base = tmp_path_factory.mktemp("faults")
    paths = Paths(base / SPLIT_NAME, base / "outside")
    make_media(paths)
    records = [case.record(paths) for case in CASES]
    tasks = paths.split / "tasks.json"
    tasks.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8", errors="backslashreplace")
    out = base / "out"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = run.main(["--input_path", str(tasks), "--output_dir", str(out), "--config", "tiny",
                         "--no_progress", "--set", "runtime.threads=1"])  # fmt: skip
    seconds = time.perf_counter() - start
    records = json.loads(tasks.read_text())
    return FaultRun(code, paths, out, *read_outputs(out), records, seconds, printed.getvalue())


def test_the_run_exits_0_and_answers_every_answerable_task(fault_run: FaultRun):
    assert fault_run.code == 0
    expected_keys = {t["key"] for t, case in zip(fault_run.summary["per_task"], CASES, strict=True)
                     if case.answer is not None}  # fmt: skip
    assert set(fault_run.qa) | set(fault_run.captions) == expected_keys
    assert not (fault_run.out / "journal.jsonl").exists()  # a finished run leaves nothing to resume
    assert "WARNING: 4 media path(s) outside the tasks folder were not read" in fault_run.printed
    assert fault_run.seconds < 120


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault_case(fault_run: FaultRun, case: Case):
    index = INDEX[case.name]
    task = fault_run.summary["per_task"][index]
    errors = [e for e in fault_run.errors if e["index"] == index]
    assert task["source"] == case.source, errors
    assert {e["stage"] for e in errors} == case.stages, errors
    assert case.reason in "\n".join(e["reason"] for e in errors)
    assert all(e["fallback"] == (case.source == "fallback") for e in errors)
    record = fault_run.records[index]
    key = task["key"]
    if case.answer is None:
        assert key not in fault_run.qa and key not in fault_run.captions
    elif record.get("task_type") == "qa":
        answer = fault_run.qa[key]
        assert isinstance(answer, int) and not isinstance(answer, bool)
        if case.answer == VALID:
            assert answer in {c["choice_id"] for c in record["choices"]}
        else:
            assert answer == case.answer
    else:
        caption = fault_run.captions[key]
        assert isinstance(caption, str) and caption.strip()


def test_cases_keep_their_keys(fault_run: FaultRun):
    """Keys are str(task_id) exactly: non-Latin text and a lone surrogate round-trip through the files."""
    assert fault_run.qa["задача-题-😀"] in (0, 1)
    assert fault_run.captions["id-\ud800"].strip()
    assert fault_run.qa[str(INDEX["float_task_id"])] == 0  # no usable task_id: keyed by position
    first = fault_run.summary["per_task"][INDEX["duplicate_task_id_first"]]
    assert fault_run.qa["duplicate"] in (0, 1, 2) and first["key"] == "duplicate"
    raw = (fault_run.out / GENERATIVE_FILE).read_bytes()
    assert b'"id-\\ud800"' in raw and "задача".encode() in (fault_run.out / CLASSIFICATION_FILE).read_bytes()


def test_the_docs_table_lists_every_case():
    table = (KIT_ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
    missing = [case.name for case in CASES if f"`{case.name}`" not in table]
    assert not missing, f"docs/faults.md lacks {missing}"


# -- variants and single points ------------------------------------------------------------------------------


def test_media_outside_the_folder_are_read_when_allowed(fault_run: FaultRun, tmp_path: Path):
    escaping = [CASES[INDEX[name]] for name in ("path_escaping_folder", "absolute_path_outside",
                                                  "symlink_to_outside", "audio_escaping_folder")]  # fmt: skip
    tasks = fault_run.paths.split / "escaping.json"
    tasks.write_text(json.dumps([case.record(fault_run.paths) for case in escaping]))
    common = ["--input_path", str(tasks), "--config", "tiny", "--no_progress", "--set", "runtime.threads=1"]
    for flags in (["--allow_any_media_path"], ["--media_root", str(fault_run.paths.outside)]):
        out = tmp_path / flags[0]
        assert run.main([*common, "--output_dir", str(out), *flags]) == 0
        qa, _, errors, summary = read_outputs(out)
        assert errors == [] and summary["by_source"] == {"model": len(escaping)}, flags
        assert set(qa) == {case.name for case in escaping}


def test_4k_frames_are_scaled_down_while_decoding(fault_run: FaultRun):
    frames = read_frames(fault_run.paths.split / "video" / "4k.mp4", 4, max_side=128)
    assert frames.pixels.shape == (4, 72, 128, 3)


def test_two_hour_clip_is_read_in_bounded_time_and_memory(fault_run: FaultRun):
    """decord would decode the whole 2-hour sound track (7 GB, 30 s or more): it is streamed instead."""
    path = fault_run.paths.split / "video" / "two_hours.mp4"
    code = (
        "import json, resource, sys, time\n"
        "from solution.media.audio import load_audio\n"
        "from solution.media.video import read_frames\n"
        "start = time.perf_counter()\n"
        "wave = load_audio(sys.argv[1], max_seconds=60)\n"
        "frames = read_frames(sys.argv[1], 8, 128)\n"
        "seconds = time.perf_counter() - start\n"
        "rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'samples': len(wave), 'duration': frames.duration, 'seconds': seconds,"
        " 'rss_mib': rss_mib}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=KIT_ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples"] == 60 * 16000 and result["duration"] == pytest.approx(7200, abs=1)
    assert result["rss_mib"] < 1024 and result["seconds"] < 30, result


def test_clip_middle_keeps_head_and_tail():
    assert clip_middle("short", 100) == "short"
    cut = clip_middle(LONG_QUESTION, 2000)
    assert len(cut) == 2000 and cut.startswith("Why does the man") and cut.endswith("at the end?")
    assert " [...] " in cut


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not valid JSON"), (b"\xff\xfe\x00garbage", "not UTF-8"), (b'[{"task_id": 1', "not valid JSON"),
     (b'{"tasks": []}', "expected a JSON array")],
)  # fmt: skip
def test_unusable_tasks_files_exit_2(tmp_path: Path, capsys, content: bytes, message: str):
    path = tmp_path / "tasks.json"
    path.write_bytes(content)
    assert (
        run.main(["--input_path", str(path), "--output_dir", str(tmp_path / "out"), "--config", "tiny"]) == 2
    )
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    assert not (tmp_path / "out").exists()


class InstantModel:
    """Answers at once (the last option, a caption naming the task): the runner's own cost alone."""

    def encode(self, frames, wave):
        return None

    def prefix_embeds(self, task, encoded):
        return None

    def answer(self, task, prefix) -> Answer:
        if task.task_type == "qa":
            return Answer(choice_id=task.choices[-1].choice_id)
        return Answer(caption=f"Caption of task {task.key}.")


def test_ten_thousand_tasks(tmp_path: Path, tiny_cfg):
    """10,000 text-only tasks through the whole runner (parsing, journal with an fsync per task, outputs) with
    an instant model: the real tiny model takes about 15 ms per task, see bench/memory.py for it."""
    n = 10_000
    records = [qa(i, video="") if i % 2 else caption(i, video="") for i in range(n)]
    records[7] = without(records[7], "choices")  # one bad record among them
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(records))
    start = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_tasks(tasks, tmp_path / "out", tiny_cfg, progress=False, model=InstantModel())
    seconds = time.perf_counter() - start
    qa_out, captions, errors, summary = read_outputs(tmp_path / "out")
    assert len(qa_out) == n // 2 and len(captions) == n // 2 and len(result.tasks) == n
    assert qa_out["1"] == 2 and qa_out["7"] == 0 and captions["0"] == "Caption of task 0."
    assert [(e["index"], e["stage"], e["fallback"]) for e in errors] == [(7, "record", True)]
    assert summary["by_source"] == {"model": n - 1, "fallback": 1}
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"10,000 tasks with an instant model: {seconds:.1f} s, peak RSS grew by {growth_mib:.0f} MiB")
    assert seconds < 60


# -- safe loading --------------------------------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def kit_sources() -> list[Path]:
    return sorted(
        [*(KIT_ROOT / "solution").rglob("*.py"), KIT_ROOT / "run.py", *(KIT_ROOT / "bench").glob("*.py")]
    )


def keyword(call: ast.Call, name: str) -> Any:
    """The constant value of keyword `name` of `call`; None when absent, ... when not a constant."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ...
    return None


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def unsafe_calls(source: str) -> list[str]:
    """Pickle imports, torch.load without weights_only=True, np.load(allow_pickle=...), shell strings."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + (
                [node.module] if isinstance(node, ast.ImportFrom) else []
            )
            problems += [
                f"line {node.lineno}: imports {n}" for n in names if n and n.split(".")[0] in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name == "torch.load" and keyword(node, "weights_only") is not True:
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and keyword(node, "allow_pickle") not in (None, False):
                problems.append(f"line {node.lineno}: np.load with allow_pickle")
            if name.startswith("subprocess.") and keyword(node, "shell") not in (None, False):
                problems.append(f"line {node.lineno}: {name} with shell=True")
            if name in ("os.system", "os.popen") or name.startswith("os.spawn"):
                problems.append(f"line {node.lineno}: {name} runs a shell string")
    return problems  # fmt: skip


def test_the_checker_catches_unsafe_code():
    bad = ("import pickle\nfrom joblib import load\nimport torch\ntorch.load('w.pt')\n"
           "torch.load('w.pt', weights_only=False)\nsubprocess.run(f'ls {p}', shell=True)\n"
           "os.system('x')\n")  # fmt: skip
    assert len(unsafe_calls(bad)) == 6
    assert (
        unsafe_calls("torch.load(p, map_location='cpu', weights_only=True)\nsubprocess.run(['ls', p])\n")
        == []
    )


def test_kit_loads_weights_safely_and_runs_no_shell_strings():
    """Weights only through safetensors or torch.load(weights_only=True); no pickle; no shell strings."""
    problems = [f"{path.relative_to(KIT_ROOT)} {p}" for path in kit_sources()
                for p in unsafe_calls(path.read_text(encoding="utf-8"))]  # fmt: skip
    assert not problems, problems


def test_media_are_never_passed_through_a_shell():
    """The media readers hand paths to PyAV and decord as arguments: no subprocess or os call there at all."""
    for path in (KIT_ROOT / "solution" / "media").glob("*.py"):
        names = {dotted(n.func) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)}
        assert not {n for n in names if n.startswith(("subprocess.", "os."))}, path
    assert os.sep not in SPLIT_NAME
