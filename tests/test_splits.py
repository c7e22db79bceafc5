"""Labelled splits: loading with validation, splitting by video, merging, writing, statistics, command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from solution import splits
from solution.splits import SplitError, load_split, merge_splits, split_by_video, split_stats, write_split
from solution.validate import main as validate_main


def qa(task_id: int, video: str, audio: str = "", answer: int = 0, **extra: Any) -> dict[str, Any]:
    choices = [{"choice_id": i, "choice": f"option {i}"} for i in range(5)]
    return {
        "task_id": task_id,
        "task_type": "qa",
        "question": f"Question {task_id}?",
        "video": video,
        "audio": audio,
        "choices": choices,
        "correct_answer_choice_id": answer,
        "correct_answer": f"option {answer}",
        **extra,
    }


def caption(task_id: int, video: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_type": "captioning",
        "question": "Describe this video in detail.",
        "video": video,
        "audio": "",
        "choices": [],
        "references": ["A caption."],
    }


def media_folder(root: Path, names: list[str], content: str = "") -> Path:
    """Files `names` (relative to `root`) holding `content` (or their own name)."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content or name)
    return root


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def small(tmp_path: Path) -> splits.Split:
    """Ten labelled tasks over four videos, written as a split (media are placeholder files)."""
    source = media_folder(tmp_path / "source", [f"video/v{i}.mp4" for i in range(4)] + ["audio/a.mp3"])
    records = [
        qa(i + 1, f"video/v{i % 4}.mp4", "audio/a.mp3" if i == 0 else "", i % 5, category="c")
        for i in range(9)
    ]
    records.append(caption(10, "video/v3.mp4"))
    return write_split(records, source, tmp_path / "small")


def test_write_split_writes_tasks_without_labels(small: splits.Split) -> None:
    tasks, labels = load(small.root / "tasks.json"), load(small.root / "labels.json")
    assert [list(task) for task in tasks] == [list(splits.TASK_KEYS)] * 10
    assert labels[0]["correct_answer_choice_id"] == 0 and labels[0]["category"] == "c"
    assert (small.root / "video/v0.mp4").is_symlink() and (
        small.root / "video/v0.mp4"
    ).read_text() == "video/v0.mp4"
    assert validate_main(["labels", str(small.root / "labels.json")]) == 0
    loaded = load_split(small.root)
    assert loaded.records == tuple(labels) and loaded.tasks == tasks and loaded.missing_media() == []


def test_write_split_copy_and_relpath(small: splits.Split, tmp_path: Path) -> None:
    copied = write_split(small.records, small.root, tmp_path / "copied", "copy")
    assert not (copied.root / "video/v1.mp4").is_symlink() and (copied.root / "video/v1.mp4").is_file()
    relative = write_split(small.records, small.root, tmp_path / "deep" / "rel", "relpath")
    assert (
        relative.records[0]["video"] == "../../small/video/v0.mp4" and not (relative.root / "video").exists()
    )
    assert load_split(relative.root).missing_media() == []
    with pytest.raises(ValueError, match="media_mode"):
        write_split(small.records, small.root, tmp_path / "x", "move")  # type: ignore[arg-type]


def test_load_split_names_the_problem(small: splits.Split) -> None:
    root = small.root
    labels = load(root / "labels.json")
    (root / "labels.json").rename(root / "kept.json")
    with pytest.raises(SplitError, match=r"labels\.json: no such file"):
        load_split(root)
    (root / "kept.json").rename(root / "labels.json")

    broken = [dict(labels[0], correct_answer_choice_id=7), *labels[1:]]
    (root / "labels.json").write_text(json.dumps(broken))
    with pytest.raises(
        SplitError, match=r"(?s)labels\.json has 1 problem.*\$\[0\]\.correct_answer_choice_id: 7 is not one"
    ):
        load_split(root)

    differing = [dict(labels[0], question="Another question?"), *labels[2:]]
    (root / "labels.json").write_text(json.dumps(differing))
    with pytest.raises(SplitError, match="different tasks") as caught:
        load_split(root)
    assert "task_id 1: question differs" in str(caught.value)
    assert "labels.json has no record with task_id '2'" in str(caught.value)

    (root / "labels.json").write_text(json.dumps(labels))
    (root / "video/v2.mp4").unlink()
    with pytest.raises(SplitError, match="media file not found"):
        load_split(root)
    assert load_split(root, check_media=False).missing_media() == [str((root / "video/v2.mp4").absolute())]


def test_split_by_video_keeps_videos_apart(small: splits.Split) -> None:
    train, dev = split_by_video(small, dev_fraction=0.3, seed=1)
    assert len(train.records) + len(dev.records) == 10 and len(dev.records) >= 3
    train_videos = {record["video"] for record in train.records}
    assert train_videos.isdisjoint(record["video"] for record in dev.records)
    assert split_by_video(small, 0.3, seed=1) == (train, dev)
    assert {tuple(r["task_id"] for r in split_by_video(small, 0.3, s)[1].records) for s in range(6)} != {
        tuple(r["task_id"] for r in dev.records)
    }
    assert split_by_video(small, 0.0)[1].records == ()
    with pytest.raises(ValueError, match="dev_fraction"):
        split_by_video(small, 1.0)


def test_merge_renumbers_and_places_media(tmp_path: Path) -> None:
    first = write_split(
        [qa(1, "video/a.mp4"), qa(2, "video/b.mp4")],
        media_folder(tmp_path / "one", ["video/a.mp4", "video/b.mp4"], "first"),
        tmp_path / "s1",
    )
    second = write_split(
        [qa(2, "video/a.mp4"), qa("x", "video/c.mp4")],
        media_folder(tmp_path / "two", ["video/a.mp4", "video/c.mp4"], "second"),
        tmp_path / "s2",
    )
    merged, notes = merge_splits([first, second], tmp_path / "merged")
    assert [record["task_id"] for record in merged.records] == [1, 2, 3, "x"]
    assert [record["video"] for record in merged.records] == [
        "video/a.mp4",
        "video/b.mp4",
        "video/a_2.mp4",
        "video/c.mp4",
    ]
    assert (merged.root / "video/a.mp4").read_text() == "first" and (
        merged.root / "video/a_2.mp4"
    ).read_text() == "second"
    assert notes == [
        "renumbered 1 task(s) whose task_id was already used",
        f"linked 4 media file(s) into {merged.root}",
    ]
    assert load_split(merged.root).records == merged.records

    copied, notes = merge_splits([first, first], tmp_path / "copied", "copy")
    assert [record["task_id"] for record in copied.records] == [1, 2, 3, 4]
    assert [record["video"] for record in copied.records] == [
        "video/a.mp4",
        "video/b.mp4",
    ] * 2  # one file, once
    assert not (copied.root / "video/a.mp4").is_symlink() and "copied 2 media file(s)" in notes[-1]


def test_stats_of_the_sample_split(sample_tasks: Path) -> None:
    stats = split_stats(load_split(sample_tasks.parent))
    assert stats["tasks"] == 6 and stats["task_types"] == {"captioning": 2, "qa": 4}
    assert sum(stats["correct_choice_ids"].values()) == 4 and stats["choices_per_qa_task"] == {"5": 4}
    assert stats["videos"] == 6 and stats["unreadable_videos"] == 0
    assert stats["video_seconds"]["min"] >= 2.9 and stats["video_seconds"]["max"] <= 6.1
    assert stats["share_with_audio_file"] == 0.5 and stats["share_with_video_sound_track"] == round(2 / 6, 4)
    assert stats["categories"] == {"(none)": 6}


def test_command_line(small: splits.Split, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert splits.main(["validate", str(small.root)]) == 0
    assert "OK" in capsys.readouterr().out
    assert splits.main(["stats", str(small.root)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["tasks"] == 10 and stats["unreadable_videos"] == 4  # placeholder files are not videos

    train, dev = tmp_path / "train", tmp_path / "dev"
    argv = [
        "split",
        str(small.root),
        "--train-out",
        str(train),
        "--dev-out",
        str(dev),
        "--dev-fraction",
        "0.3",
    ]
    assert splits.main(argv) == 0
    assert len(load_split(train).records) + len(load_split(dev).records) == 10
    assert (
        splits.main(["merge", str(train), str(dev), "--out", str(tmp_path / "back"), "--media", "copy"]) == 0
    )
    out = capsys.readouterr().out
    assert "10 task(s)" in out and "note: copied" in out
    assert sorted(r["task_id"] for r in load_split(tmp_path / "back").records) == list(range(1, 11))

    (dev / "tasks.json").write_text("[")
    assert splits.main(["validate", str(dev)]) == 1
    assert "FAILED" in capsys.readouterr().out and splits.main(["stats", str(dev)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
