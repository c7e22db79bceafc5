"""Write a small synthetic sample split in the contest layout.

    python -m solution.sample_split --out data/sample [--seed 0] [--force]

writes tasks.json (the contest's input records), labels.json (the same records with answers), video/*.mp4 and
audio/*.mp3. Each clip shows or sounds what its question asks about (a coloured square, beeps, a direction).
The seed picks the content and the order of the answer options; the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from solution import synth

SIZE = (160, 120)
FPS = 10.0
AUDIO_RATE = 16000
NOT_ENOUGH = "Not enough information to answer"
CAPTION_QUESTION = "Describe this video in detail."
COLOURS: dict[str, synth.Colour] = {name: synth.PALETTE[name] for name in ("red", "green", "blue", "yellow")}
COUNTS = ("One", "Two", "Three", "Four")
DIRECTIONS = ("From left to right", "From right to left", "Upwards", "Downwards")


@dataclass(frozen=True)
class SampleTask:
    """A labelled record and the media it refers to."""

    label: dict[str, Any]  # the tasks.json record plus its answer keys
    frames: np.ndarray  # (T, H, W, 3) uint8, written to label["video"]
    track: np.ndarray | None  # the mp4's own sound track
    audio: np.ndarray | None  # written to label["audio"] when that is not ""


def _qa(
    task_id: int, question: str, options: Sequence[str], answer: str, rng: np.random.Generator, **media: str
) -> dict[str, Any]:
    """A labelled qa record: the four options in a seeded order, then NOT_ENOUGH, with ids 0..4."""
    texts = [options[i] for i in rng.permutation(len(options))] + [NOT_ENOUGH]
    return {
        "task_id": task_id,
        "task_type": "qa",
        "question": question,
        **media,
        "choices": [{"choice_id": i, "choice": text} for i, text in enumerate(texts)],
        "correct_answer_choice_id": texts.index(answer),
        "correct_answer": answer,
    }


def _captioning(task_id: int, references: list[str], **media: str) -> dict[str, Any]:
    """A labelled captioning record."""
    return {
        "task_id": task_id,
        "task_type": "captioning",
        "question": CAPTION_QUESTION,
        **media,
        "choices": [],
        "references": references,
    }


def _media(name: str, audio: bool) -> dict[str, str]:
    """The record's media paths for clip `name`; audio "" when the task has no audio file."""
    return {"video": f"video/{name}.mp4", "audio": f"audio/{name}.mp3" if audio else ""}


def build_tasks(seed: int = 0) -> list[SampleTask]:
    """The sample tasks for `seed`: 4 qa (two need the audio, one of them the mp4's own track) + 2 captioning."""
    rng = np.random.default_rng(seed)
    square, square2 = rng.choice(list(COLOURS), size=2, replace=False).tolist()
    file_beeps, track_beeps = (int(n) for n in rng.integers(2, 5, size=2))
    reverse = bool(rng.integers(2))
    stripes = rng.choice(list(COLOURS), size=3, replace=False).tolist()
    still = synth.moving_square((255, 255, 255), (0, 0, 0), SIZE, FPS, 4.0)

    direction = DIRECTIONS[int(reverse)]
    return [
        SampleTask(
            _qa(
                1,
                "What colour is the square?",
                [name.capitalize() for name in COLOURS],
                square.capitalize(),
                rng,
                **_media("square_colour", True),
            ),
            synth.moving_square(COLOURS[square], size=SIZE, fps=FPS, seconds=3.0),
            None,
            synth.tone(440.0, 3.0, AUDIO_RATE, amplitude=0.2),
        ),
        SampleTask(
            _qa(
                2,
                "How many beeps are in the audio?",
                COUNTS,
                COUNTS[file_beeps - 1],
                rng,
                **_media("beeps", True),
            ),
            still,
            None,
            synth.beeps(file_beeps, 4.0, AUDIO_RATE),
        ),
        SampleTask(
            _qa(
                3,
                "How many beeps can be heard in the video?",
                COUNTS,
                COUNTS[track_beeps - 1],
                rng,
                **_media("track_beeps", False),
            ),
            still,
            synth.beeps(track_beeps, 4.0, AUDIO_RATE, freq_hz=660.0),
            None,
        ),
        SampleTask(
            _qa(
                4,
                "In which direction does the square move?",
                DIRECTIONS,
                direction,
                rng,
                **_media("motion", False),
            ),
            synth.moving_square(COLOURS[square2], size=SIZE, fps=FPS, seconds=3.0, reverse=reverse),
            None,
            None,
        ),
        SampleTask(
            _captioning(
                5,
                [
                    f"The background changes from {stripes[0]} to {stripes[1]} to {stripes[2]} "
                    "while a white square moves from left to right.",
                    f"A white square slides to the right over a {stripes[0]}, then {stripes[1]}, "
                    f"then {stripes[2]} screen.",
                ],
                **_media("stripes", False),
            ),
            synth.colour_clip([COLOURS[c] for c in stripes], SIZE, FPS, 6.0),
            None,
            None,
        ),
        SampleTask(
            _captioning(
                6,
                [
                    f"A {square2} square moves {direction.lower()} across a grey background while a steady tone "
                    "plays.",
                    f"A {square2} square slides across a grey screen and a continuous beep is heard.",
                ],
                **_media("square_tone", True),
            ),
            synth.moving_square(COLOURS[square2], size=SIZE, fps=FPS, seconds=5.0, reverse=reverse),
            synth.tone(330.0, 5.0, AUDIO_RATE, amplitude=0.2),
            synth.tone(330.0, 5.0, AUDIO_RATE, amplitude=0.2),
        ),
    ]


def task_record(label: dict[str, Any]) -> dict[str, Any]:
    """The tasks.json record of a labelled record: the answer keys removed."""
    return {key: label[key] for key in ("task_id", "task_type", "question", "video", "audio", "choices")}


def _dump(path: Path, document: Any) -> None:
    """Write JSON deterministically."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def is_complete(out_dir: Path) -> bool:
    """Whether `out_dir` holds tasks.json, labels.json and every media file they name."""
    try:
        records = json.loads((out_dir / "tasks.json").read_text(encoding="utf-8"))
        json.loads((out_dir / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    paths = [record[key] for record in records for key in ("video", "audio") if record.get(key)]
    return all((out_dir / path).is_file() for path in paths)


def make_sample_split(out_dir: str | Path, seed: int = 0, force: bool = False) -> Path:
    """Write the sample split into `out_dir` (unless it is already complete) and return its tasks.json path."""
    out_dir = Path(out_dir)
    tasks_path = out_dir / "tasks.json"
    if not force and is_complete(out_dir):
        return tasks_path
    (out_dir / "video").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    tasks = build_tasks(seed)
    for task in tasks:
        synth.write_video(
            out_dir / task.label["video"], task.frames, FPS, audio=task.track, audio_rate=AUDIO_RATE
        )
        if task.audio is not None:
            synth.write_audio(out_dir / task.label["audio"], task.audio, AUDIO_RATE)
    _dump(out_dir / "labels.json", [task.label for task in tasks])
    _dump(
        tasks_path, [task_record(task.label) for task in tasks]
    )  # last: its presence marks a complete split
    return tasks_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="picks the content and the option order")
    parser.add_argument("--force", action="store_true", help="rewrite even when the split is complete")
    args = parser.parse_args(argv)
    print(make_sample_split(args.out, args.seed, args.force))


if __name__ == "__main__":
    main()
