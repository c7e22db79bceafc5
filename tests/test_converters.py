"""Converters from NExT-QA and caption datasets, on small hand-made files in their published formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from solution import converters
from solution.splits import load_split
from solution.validate import main as validate_main

NEXTQA_CSV = """\
video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4
4010069381,369,640,480,how do the two man play the instrument,0,6,CH,roll the handle,tap their feet,strum the string,hit with sticks,pat with hand
7508439506,765,640,480,where is this video taken,4,4,DL,swimming pool,outdoor,field,desert,bed room
7508439506,765,640,480,why did the boy put his hands on the baby,0,1,CW,play with baby,to give her food,play,support the baby,"fall, and pounce"
9999999999,300,640,480,what does the dog do after it jumps,2,3,TN,sit,run,bark,sleep,eat
"""
VIDEO_MAP = {
    "4010069381": "1001/4010069381",
    "7508439506": "0024/7508439506",
    "9999999999": "1100/9999999999",
}
ACTIVITYNET = {
    "v_QOlSCBRmfWY": {
        "duration": 82.73,
        "timestamps": [[17.37, 60.81], [0.83, 19.86]],
        "sentences": [" Then she dances slowly.", "A young woman is seen standing in a room."],
    },
    "v_missing0000": {"duration": 10.0, "timestamps": [[0, 5]], "sentences": ["A man runs."]},
}
VIDEOINSTRUCT = [
    {"video_id": "v_k_ZXmr8pmrs", "q": "What is the man doing?", "a": "He is cooking pasta."},
    {"video_id": "v_k_ZXmr8pmrs", "q": "What is the man doing?", "a": "Cooking."},
    {"video": "clip2.webm", "question": "where is this", "answer": "In a kitchen."},
]


def write(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def nextqa(tmp_path: Path) -> dict[str, Path]:
    """NExT-QA's CSV, video map and a media root holding two of the three videos."""
    media = tmp_path / "NExTVideo"
    for relative in ("1001/4010069381", "0024/7508439506"):
        write(media / f"{relative}.mp4", relative)
    return {
        "csv": write(tmp_path / "val.csv", NEXTQA_CSV),
        "map": write(tmp_path / "map_vid_vidorID.json", VIDEO_MAP),
        "media": media,
    }


def nextqa_argv(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["nextqa", "--csv", str(files["csv"]), "--map", str(files["map"])] + [
        "--media-root",
        str(files["media"]),
        "--out",
        str(out),
        *extra,
    ]


def test_nextqa_records(nextqa: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "split"
    assert converters.main(nextqa_argv(nextqa, out)) == 0
    printed = capsys.readouterr().out
    assert "4 task(s) written" in printed and "missing media: 1 file(s)" in printed
    assert "1100/9999999999.mp4" in printed
    assert (out / "missing_media.txt").read_text().strip().endswith("NExTVideo/1100/9999999999.mp4")

    labels = load(out / "labels.json")
    first = labels[0]
    assert first["question"] == "How do the two man play the instrument?"
    assert [c["choice_id"] for c in first["choices"]] == [0, 1, 2, 3, 4]
    assert first["choices"][0]["choice"] == "Roll the handle" and first["correct_answer"] == "Roll the handle"
    assert first["audio"] == "" and first["category"] == "CH" and first["source_id"] == "4010069381_6"
    assert (
        first["video"] == "video/4010069381.mp4" and (out / first["video"]).read_text() == "1001/4010069381"
    )
    assert labels[1]["correct_answer_choice_id"] == 4 and labels[1]["correct_answer"] == "Bed room"
    assert labels[2]["choices"][4]["choice"] == "Fall, and pounce"  # a quoted CSV field
    assert [label["task_id"] for label in labels] == [1, 2, 3, 4]
    assert validate_main(["labels", str(out / "labels.json"), "--skip-media"]) == 0
    assert validate_main(["labels", str(out / "labels.json")]) == 1  # the missing video

    raw = tmp_path / "raw"
    assert (
        converters.main(nextqa_argv(nextqa, raw, "--drop-missing", "--raw-text", "--media", "relpath")) == 0
    )
    assert "1 task(s) left out" in capsys.readouterr().out
    split = load_split(raw)
    assert (
        len(split.records) == 3 and split.records[0]["question"] == "how do the two man play the instrument"
    )
    assert split.records[0]["video"] == "../NExTVideo/1001/4010069381.mp4"
    assert validate_main(["labels", str(raw / "labels.json")]) == 0


def test_nextqa_strict_and_bad_files(
    nextqa: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert converters.main(nextqa_argv(nextqa, tmp_path / "strict", "--strict")) == 1
    assert "1 media file(s) not found (--strict)" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()

    write(nextqa["csv"], NEXTQA_CSV.replace(",type,", ",kind,"))
    assert converters.main(nextqa_argv(nextqa, tmp_path / "x")) == 1
    err = capsys.readouterr().err
    assert str(nextqa["csv"]) in err and "missing column(s) type" in err

    write(nextqa["csv"], NEXTQA_CSV.replace("where is this video taken,4,", "where is this video taken,5,"))
    assert converters.main(nextqa_argv(nextqa, tmp_path / "x")) == 1
    assert "line 3: answer '5' is not an option index 0-4" in capsys.readouterr().err

    write(nextqa["csv"], NEXTQA_CSV)
    write(nextqa["map"], ["not", "a", "map"])
    assert converters.main(nextqa_argv(nextqa, tmp_path / "x")) == 1
    assert "map_vid_vidorID.json: expected a JSON object" in capsys.readouterr().err


def test_activitynet_captions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "videos"
    write(media / "QOlSCBRmfWY.mkv", "video")  # downloaded without ActivityNet's v_ prefix
    source = write(tmp_path / "train.json", ACTIVITYNET)
    out = tmp_path / "anet"
    argv = ["captions", "--json", str(source), "--media-root", str(media), "--out", str(out)]
    assert converters.main(argv) == 0
    assert "missing media: 1 file(s)" in capsys.readouterr().out
    labels = load(out / "labels.json")
    assert [label["task_type"] for label in labels] == ["captioning", "captioning"]
    first = labels[0]
    assert first["question"] == "Describe this video in detail." and first["choices"] == []
    assert first["references"] == ["A young woman is seen standing in a room. Then she dances slowly."]
    assert first["video"] == "video/QOlSCBRmfWY.mkv" and first["audio"] == ""
    assert validate_main(["labels", str(out / "labels.json"), "--skip-media"]) == 0

    asked = ["--question", "What happens in the video?", "--drop-missing"]
    assert converters.main([*argv[:-1], str(tmp_path / "asked"), *asked]) == 0
    assert [label["question"] for label in load(tmp_path / "asked" / "labels.json")] == [
        "What happens in the video?"
    ]

    write(source, {"v_x": {"timestamps": [[0, 1]], "sentences": "not a list"}})
    assert converters.main(argv) == 1
    assert "entry 'v_x': expected 'sentences', a list of strings" in capsys.readouterr().err


def test_videoinstruct_captions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "videos"
    write(media / "v_k_ZXmr8pmrs.mp4", "one")
    write(media / "clip2.webm", "two")
    source = write(tmp_path / "VideoInstruct100K.json", VIDEOINSTRUCT)
    out = tmp_path / "vi"
    argv = ["captions", "--json", str(source), "--media-root", str(media), "--out", str(out), "--strict"]
    assert converters.main(argv) == 0
    assert "missing" not in capsys.readouterr().out
    labels = load_split(out).records
    assert [label["question"] for label in labels] == ["What is the man doing?", "Where is this?"]
    assert labels[0]["references"] == ["He is cooking pasta.", "Cooking."]
    assert [label["video"] for label in labels] == ["video/v_k_ZXmr8pmrs.mp4", "video/clip2.webm"]
    assert [label["source_id"] for label in labels] == ["v_k_ZXmr8pmrs", "clip2.webm"]

    write(source, [{"video_id": "v_1", "a": "no question"}])
    assert converters.main(argv) == 1
    assert "entry 0: expected a non-empty string in 'q' or 'question'" in capsys.readouterr().err


def test_tidy_sentence() -> None:
    assert converters.tidy_sentence("  why  did he run ", question=True) == "Why did he run?"
    assert converters.tidy_sentence("ok?", question=True) == "Ok?" and converters.tidy_sentence("") == ""
