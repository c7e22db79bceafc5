"""The synthetic benchmark: determinism, balance, held-out combinations, and answers that need the modality
their category names (checked by a tiny oracle on the decoded media, with audio and video swapped)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from solution import synthetic
from solution.media.audio import SAMPLE_RATE, task_audio
from solution.media.video import read_frames
from solution.splits import load_split
from solution.synthetic import DEFAULT_HOLDOUT, make_synthetic_split, matches, parse_combo, plan_split
from solution.validate import main as validate_main

CLIP_SECONDS = 2.5
FRAMES = round(synthetic.FPS * CLIP_SECONDS)  # every frame of a clip


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 42-task train split (6 tasks of each kind) with real media."""
    return make_synthetic_split(
        tmp_path_factory.mktemp("synthetic"), seed=3, n_tasks=42, clip_seconds=CLIP_SECONDS
    ).parent


def load(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- files, determinism, validity


def test_split_validates_and_has_the_contest_layout(split_dir: Path) -> None:
    assert validate_main(["tasks", str(split_dir / "tasks.json")]) == 0
    assert validate_main(["labels", str(split_dir / "labels.json")]) == 0
    split = load_split(split_dir)
    tasks = load(split_dir / "tasks.json")
    assert all(
        list(task) == ["task_id", "task_type", "question", "video", "audio", "choices"] for task in tasks
    )
    assert {label["category"] for label in split.records} == {"video", "audio", "both"}
    assert Counter(label["kind"] for label in split.records) == {kind: 6 for kind in synthetic.KINDS}
    in_video = [label for label in split.records if label["audio"] == ""]
    assert len(in_video) == round(0.25 * 42)
    for label in split.records:
        assert label["video"].endswith(".mp4")
        if label["task_type"] == "qa":
            assert [c["choice_id"] for c in label["choices"]] == [0, 1, 2, 3, 4]
            assert len({c["choice"] for c in label["choices"]}) == 5
            assert label["choices"][label["correct_answer_choice_id"]]["choice"] == label["correct_answer"]
        else:
            assert len(label["references"]) == 3 and label["question"] == "Describe this video in detail."


def test_same_seed_gives_identical_files(split_dir: Path, tmp_path: Path) -> None:
    again = make_synthetic_split(tmp_path / "again", seed=3, n_tasks=42, clip_seconds=CLIP_SECONDS).parent
    media = [t[key] for t in load(split_dir / "tasks.json") for key in ("video", "audio") if t[key]]
    for name in ["tasks.json", "labels.json", *media]:
        assert (again / name).read_bytes() == (split_dir / name).read_bytes(), name
    other = [task.label for task in plan_split(seed=4, n_tasks=42, clip_seconds=CLIP_SECONDS)]
    assert other != load(split_dir / "labels.json")


# ---------------------------------------------------------------- balance and held-out combinations


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_correct_positions_and_answers_are_balanced(split: str) -> None:
    labels = [task.label for task in plan_split(seed=1, n_tasks=203, split=split)]  # type: ignore[arg-type]
    positions = Counter(label["correct_answer_choice_id"] for label in labels if label["task_type"] == "qa")
    assert set(positions) == {0, 1, 2, 3, 4} and max(positions.values()) - min(positions.values()) <= 1
    kinds = Counter(label["kind"] for label in labels)
    assert max(kinds.values()) - min(kinds.values()) <= 1
    for kind in kinds:
        answer_name = next(iter(synthetic.KINDS[kind].attributes))
        answers = Counter(label["attributes"][answer_name] for label in labels if label["kind"] == kind)
        assert max(answers.values()) - min(answers.values()) <= 1, (kind, answers)
        if split == "train":  # every answer value of the kind is used
            assert len(answers) == len(synthetic.KINDS[kind].attributes[answer_name])


def test_kind_weights_set_each_kinds_share() -> None:
    weights = {"colour_at_beep": 3, "position_at_beep": 2, "caption": 0}
    labels = [task.label for task in plan_split(seed=4, n_tasks=90, kind_weights=weights)]
    kinds = Counter(label["kind"] for label in labels)
    assert kinds == {"colour_at_beep": 30, "position_at_beep": 20, "square_colour": 10, "square_direction": 10,
                     "beep_count": 10, "beep_pitch": 10}  # fmt: skip
    colours = Counter(label["attributes"]["colour"] for label in labels if label["kind"] == "colour_at_beep")
    assert len(colours) == len(synthetic.COLOURS) and max(colours.values()) - min(colours.values()) <= 1
    default = plan_split(seed=4, n_tasks=90)
    assert plan_split(seed=4, n_tasks=90, kind_weights={}) == default  # every kind 1
    with pytest.raises(ValueError, match="kind_weights"):
        plan_split(kind_weights={"colour_at_sunset": 2})
    with pytest.raises(ValueError, match="kind_weights"):
        plan_split(kind_weights={"caption": -1})
    with pytest.raises(ValueError, match="leave no kind"):
        plan_split(kind_weights=dict.fromkeys(synthetic.KINDS, 0))


def test_held_out_combinations_only_in_the_heldout_split() -> None:
    combos = [parse_combo(text) for text in DEFAULT_HOLDOUT]
    for split in ("train", "dev"):
        for task in plan_split(seed=2, n_tasks=400, split=split):  # type: ignore[arg-type]
            assert not any(matches(task.label["attributes"], combo) for combo in combos), task.label
    heldout = [task.label for task in plan_split(seed=2, n_tasks=140, split="heldout")]
    assert all(any(matches(label["attributes"], combo) for combo in combos) for label in heldout)
    for combo in combos:  # every held-out combination is tested
        assert any(matches(label["attributes"], combo) for label in heldout), combo
    assert {label["kind"] for label in heldout} == set(synthetic.KINDS)

    custom = [
        task.label
        for task in plan_split(seed=2, n_tasks=30, split="heldout", holdout=["colour=cyan,beeps=1"])
    ]
    assert {label["kind"] for label in custom} == {"colour_at_beep", "caption"}
    assert all(
        label["attributes"]["colour"] == "cyan" and label["attributes"]["beeps"] == 1 for label in custom
    )
    none = plan_split(seed=2, n_tasks=30, holdout=[])
    assert len(none) == 30


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="colour must be one of"):
        parse_combo("colour=pink,beeps=2")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_combo("shape=square,beeps=2")
    with pytest.raises(ValueError, match="at least two"):
        parse_combo("beeps=2")
    with pytest.raises(ValueError, match="clip_seconds"):
        plan_split(clip_seconds=0.5)
    with pytest.raises(ValueError, match="split must be"):
        plan_split(split="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heldout split would be empty"):
        plan_split(split="heldout", holdout=["colour=red,pitch=low,position=left"])


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--out",
        str(tmp_path / "cli"),
        "--seed",
        "5",
        "--size",
        "7",
        "--clip-seconds",
        "2",
        "--frame-size",
        "96x96",
    ]
    assert synthetic.main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(tmp_path / "cli" / "tasks.json") and "7 train task(s)" in out
    assert read_frames(tmp_path / "cli" / "video" / "train_00001.mp4", 2).pixels.shape == (2, 96, 96, 3)
    assert synthetic.main([*argv, "--holdout", "colour=pink,beeps=2"]) == 2
    assert "colour must be one of" in capsys.readouterr().err
    assert synthetic.main([*argv, "--kind-weight", "colour_at_sunset=2"]) == 2
    assert "kind_weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not KIND=N
        synthetic.main([*argv, "--kind-weight", "colour_at_beep"])


# ---------------------------------------------------------------- the oracle: answers from decoded signals


@dataclass(frozen=True)
class Seen:
    """What the oracle reads from a video: the square's colour name and centre in each frame."""

    colours: list[str]
    centres: np.ndarray  # (T, 2) x, y
    times: np.ndarray  # (T,) seconds


@dataclass(frozen=True)
class Heard:
    """What the oracle reads from a sound: the beeps' centre times and their pitch name."""

    times: list[float]
    pitch: str


def look(path: Path) -> Seen:
    frames = read_frames(path, FRAMES, keyframe_tolerance=0.0)
    pixels = frames.pixels.astype(int)
    mask = np.abs(pixels - np.array(synthetic.BACKGROUND)).max(axis=-1) > 40  # (T, H, W)
    names = list(synthetic.COLOURS)
    palette = np.array([synthetic.COLOURS[name] for name in names])
    colours, centres = [], []
    for image, square in zip(pixels, mask, strict=True):
        mean = image[square].mean(axis=0)
        colours.append(names[int(np.abs(palette - mean).sum(axis=1).argmin())])
        ys, xs = np.nonzero(square)
        centres.append((xs.mean(), ys.mean()))
    return Seen(colours, np.array(centres), frames.timestamps)


def listen(wave: np.ndarray) -> Heard:
    loud = np.convolve(np.abs(wave), np.ones(200) / 200, mode="same") > 0.1
    edges = np.diff(np.concatenate([[0], loud.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    spectrum = np.abs(np.fft.rfft(wave * loud))
    peak = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)[spectrum.argmax()]
    pitch = min(synthetic.PITCHES, key=lambda name: abs(np.log(synthetic.PITCHES[name] / peak)))
    return Heard([(s + e) / 2 / SAMPLE_RATE for s, e in zip(starts, ends, strict=True)], pitch)


def position_at(seen: Seen, moment: float) -> str:
    """Where the square is at `moment`: the third of its path, named by the screen side."""
    frame = int(np.abs(seen.times - moment).argmin())
    span = seen.centres.max(axis=0) - seen.centres.min(axis=0)
    axis = int(span.argmax())  # 0: it moves horizontally, 1: vertically
    if span[axis] < 5:  # a square that does not move stays in the centre
        return "centre"
    third = min(2, int(3 * (seen.centres[frame, axis] - seen.centres[:, axis].min()) / span[axis]))
    return [("left", "centre", "right"), ("top", "centre", "bottom")][axis][third]


def oracle(label: dict[str, Any], seen: Seen, heard: Heard) -> str | None:
    """The answer text the decoded signals give for the label's question (None when they give none)."""
    kind = label["kind"]
    if kind == "square_colour":
        return Counter(seen.colours).most_common(1)[0][0].capitalize()
    if kind == "square_direction":
        dx, dy = seen.centres[-1] - seen.centres[0]
        if max(abs(dx), abs(dy)) < 5:
            return synthetic.DIRECTIONS["none"]
        name = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        return synthetic.DIRECTIONS[name]
    if kind == "beep_count":
        return (
            synthetic.COUNT_WORDS[len(heard.times) - 1].capitalize() if 1 <= len(heard.times) <= 5 else None
        )
    if kind == "beep_pitch":
        return heard.pitch.replace("_", " ").capitalize()
    words = label["question"].split()
    which = (
        synthetic.ORDINALS.index(words[words.index("beep") - 1]) if "the beep" not in label["question"] else 0
    )
    if which >= len(heard.times):
        return None
    moment = heard.times[which]
    if kind == "colour_at_beep":
        return seen.colours[int(np.abs(seen.times - moment).argmin())].capitalize()
    if kind == "position_at_beep":
        return synthetic.POSITIONS[position_at(seen, moment)]
    raise AssertionError(kind)


def test_modality_dependence(split_dir: Path) -> None:
    """Video answers come from the picture alone, audio answers from the sound alone, 'both' answers from both:
    the oracle agrees with every label, keeps video/audio answers when the other modality is swapped, and changes
    'both' answers when either is swapped."""
    labels = [label for label in load(split_dir / "labels.json") if label["task_type"] == "qa"]
    seen, heard = {}, {}
    for label in labels:
        audio = split_dir / label["audio"] if label["audio"] else None
        wave, source = task_audio(audio, split_dir / label["video"])
        assert source == ("audio file" if audio else "video track") and wave is not None
        seen[label["task_id"]], heard[label["task_id"]] = look(split_dir / label["video"]), listen(wave)
    ids = list(seen)
    both_shares = []  # per 'both' label: the share of audio swaps and of video swaps that change its answer
    for label in labels:
        own = label["task_id"]
        assert oracle(label, seen[own], heard[own]) == label["correct_answer"], label
        others = [other for other in ids if other != own]
        with_other_audio = [oracle(label, seen[own], heard[other]) for other in others]
        with_other_video = [oracle(label, seen[other], heard[own]) for other in others]
        changed_by_audio = sum(answer != label["correct_answer"] for answer in with_other_audio)
        changed_by_video = sum(answer != label["correct_answer"] for answer in with_other_video)
        category = label["category"]
        assert (changed_by_audio == 0) == (category == "video"), (label, changed_by_audio)
        assert (changed_by_video == 0) == (category == "audio"), (label, changed_by_video)
        if category == "both":
            both_shares.append((changed_by_audio / len(others), changed_by_video / len(others)))
    # many swaps change a 'both' answer, not just an odd one (a single label may be an easy one: a beep mid-clip
    # finds most squares in the centre)
    assert np.mean(both_shares, axis=0).min() >= 0.25, np.mean(both_shares, axis=0)
    # the swapped-in modality did differ: video tasks carry varied beeps, audio tasks varied squares
    video_tasks = [label["task_id"] for label in labels if label["category"] == "video"]
    audio_tasks = [label["task_id"] for label in labels if label["category"] == "audio"]
    assert len({(len(heard[i].times), heard[i].pitch) for i in video_tasks}) > 3
    assert len({seen[i].colours[0] for i in audio_tasks}) > 2
