"""Smoke test of bench/compare.py on the tiny preset: three systems in fresh processes, figures, chart, JSON."""

import json
import sys
from pathlib import Path

from solution import KIT_ROOT

sys.path.insert(0, str(KIT_ROOT / "bench"))
import compare  # noqa: E402


def test_compare_on_the_tiny_preset(sample_tasks: Path, tmp_path: Path, capsys):
    figures, png = tmp_path / "compare.json", tmp_path / "compare.png"
    code = compare.main(["--split", str(sample_tasks.parent), "--config", "tiny", "--set", "runtime.threads=1",
                         "--json", str(figures), "--png", str(png), "--memory-tasks", "3", "--repeat", "2",
                         "--out", str(tmp_path / "runs")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert (
        "| baseline |" in text and "| solution unbatched |" in text and "baseline / solution s/task" in text
    )
    doc = json.loads(figures.read_text())
    assert list(doc["systems"]) == ["baseline", "solution", "solution unbatched"]
    for system in doc["systems"].values():
        assert system["tasks"] == 2 * 6 and system["s_per_task"] > 0 and system["peak_rss_mib"] > 50
        assert 0 <= system["accuracy"] <= 1 and 0 <= system["meteor"] <= 1
    assert doc["agreement"]["all_same"] is True  # batched and unbatched answers are the same
    assert doc["ratios"]["baseline_over_solution"] > 0 and doc["memory"][0]["tasks"] == 3
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    answers = json.loads(
        (tmp_path / "runs" / "memory_3" / "out" / "for_classification_metric.json").read_text()
    )
    assert set(answers) <= {"r0", "r1", "r2"}  # the repeated tasks carry new task_ids


def test_repeated_tasks_carry_matching_labels(sample_tasks: Path, tmp_path: Path):
    split = sample_tasks.parent
    path = compare.repeated_tasks(split, 8, tmp_path / "repeated")
    tasks, labels = json.loads(path.read_text()), json.loads((path.parent / "labels.json").read_text())
    originals = {r["task_id"]: r for r in json.loads((split / "labels.json").read_text())}
    source = json.loads((split / "tasks.json").read_text())
    assert [t["task_id"] for t in tasks] == [lab["task_id"] for lab in labels] == [f"r{i}" for i in range(8)]
    for i, label in enumerate(labels):
        assert {**label, "task_id": source[i % 6]["task_id"]} == originals[source[i % 6]["task_id"]]
