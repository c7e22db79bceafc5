"""A synthetic audio-visual benchmark: questions answered by the picture, by the sound, or only by both.

    python -m solution.synthetic --out data/synth/train --seed 0 --size 200 [--split train|dev|heldout]
        [--clip-seconds 3] [--holdout colour=red,beeps=2 ...] [--no-holdout] [--kind-weight colour_at_beep=2 ...]

A coloured square moves over a grey background (starting and stopping at seeded moments) while short beeps
sound. Kinds of task (labels.json `kind`; `category` says which modality the answer needs):

| kind | category | question | attributes |
|---|---|---|---|
| square_colour | video | What colour is the moving square? | colour, direction |
| square_direction | video | In which direction does the square move? | direction, colour |
| beep_count | audio | How many beeps can be heard? | beeps, pitch |
| beep_pitch | audio | What is the pitch of the beeps? | pitch, beeps |
| colour_at_beep | both | What colour was the square when the second beep sounded? (it changes colour) | colour, beeps |
| position_at_beep | both | Where was the square when the beep sounded? | position, direction, colour |
| caption | both | Describe this video in detail. (template references) | colour, direction, beeps, pitch |

Video-only tasks carry random beeps and audio-only tasks a random moving square, so the other modality is there
but says nothing about the answer. Every qa task has 5 options (choice_id 0..4); within a split the correct
position is balanced (each equally often, +-1) and so are the answers of each kind. The kinds are equally common
(+-1), or in the proportions `--kind-weight` gives (e.g. a training split with twice as many distinct "both"
clips).

Held-out combinations (`--holdout colour=red,beeps=2`) are attribute pairs that never occur in the train and dev
splits; the heldout split holds only tasks whose attributes match one of them, so a score on it measures
generalisation to unseen combinations. A combination applies to the kinds that have all its attributes.

Each task's video is an H.264 .mp4; most tasks have a separate .mp3, a share (`sound_in_video_share`) has audio ""
and the sound inside the .mp4. The same seed and parameters give byte-identical files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from solution import synth
from solution.splits import task_record

SplitName = Literal["train", "dev", "heldout"]
SPLIT_CODES: dict[str, int] = {"train": 0, "dev": 1, "heldout": 2}  # seeds the random stream of each split
SIZE = (128, 96)  # width, height
FPS = 10.0
AUDIO_RATE = 16000
CLIP_SECONDS = 3.0
MIN_CLIP_SECONDS, MAX_CLIP_SECONDS = 2.0, 12.0
SOUND_IN_VIDEO_SHARE = 0.25
NUM_OPTIONS = 5
BACKGROUND: synth.Colour = (128, 128, 128)
BEEP_SECONDS = 0.15
BEEP_AMPLITUDE = 0.5
SEGMENTS = 4  # colour segments of a colour_at_beep clip
BEEP_JITTER = 0.15  # of the spacing between evenly spread beeps
SEGMENT_JITTER = 0.2  # of a segment, for a beep placed in a colour segment
THIRD_JITTER = 0.04  # of the square's path, for a beep placed in one third of it
MOTION_START = (0.0, 0.4)  # the square starts moving at a random fraction of the clip in this range
MIN_MOTION, MOTION_END = 0.5, 0.9  # it moves for at least this fraction and stops by this one
CAPTION_QUESTION = "Describe this video in detail."

COLOURS: dict[str, synth.Colour] = synth.PALETTE
DIRECTIONS = {
    "right": "From left to right",
    "left": "From right to left",
    "up": "Upwards",
    "down": "Downwards",
    "none": "It does not move",
}
MOVING = ("right", "left", "up", "down")
DIRECTION_PHRASES = {
    "right": "from left to right",
    "left": "from right to left",
    "up": "upwards",
    "down": "downwards",
}
PATH_ENDS = {
    "right": ("left", "right"),
    "left": ("right", "left"),
    "up": ("bottom", "top"),
    "down": ("top", "bottom"),
}
COUNT_WORDS = ("one", "two", "three", "four", "five")
PITCHES = {"very_low": 220.0, "low": 330.0, "medium": 494.0, "high": 740.0, "very_high": 1109.0}  # Hz
POSITIONS = {
    "left": "On the left",
    "right": "On the right",
    "top": "At the top",
    "bottom": "At the bottom",
    "centre": "In the centre",
}
ORDINALS = ("first", "second", "third")

ATTRIBUTE_VALUES: dict[str, tuple[Any, ...]] = {
    "colour": tuple(COLOURS),
    "direction": tuple(DIRECTIONS),
    "beeps": (1, 2, 3, 4, 5),
    "pitch": tuple(PITCHES),
    "position": tuple(POSITIONS),
}
DEFAULT_HOLDOUT = (  # two or three per pair of attributes, so no held-out kind has a single answer
    "colour=red,beeps=2",
    "colour=blue,beeps=3",
    "colour=cyan,beeps=1",
    "colour=green,direction=up",
    "colour=yellow,direction=left",
    "beeps=4,pitch=high",
    "beeps=2,pitch=very_low",
    "position=left,colour=blue",  # not with a direction: training would then see "on the left" only at the end of
    "position=bottom,colour=purple",  # a leftward path, and no learner could tell which of the two it means
)


@dataclass(frozen=True)
class Kind:
    """A kind of task: its category and the values of its attributes (the first one is the answer)."""

    category: str  # "video" | "audio" | "both"
    attributes: Mapping[str, tuple[Any, ...]]
    task_type: str = "qa"


KINDS: dict[str, Kind] = {
    "square_colour": Kind("video", {"colour": tuple(COLOURS), "direction": MOVING}),
    "square_direction": Kind("video", {"direction": tuple(DIRECTIONS), "colour": tuple(COLOURS)}),
    "beep_count": Kind("audio", {"beeps": (1, 2, 3, 4, 5), "pitch": tuple(PITCHES)}),
    "beep_pitch": Kind("audio", {"pitch": tuple(PITCHES), "beeps": (1, 2, 3, 4, 5)}),
    "colour_at_beep": Kind("both", {"colour": tuple(COLOURS), "beeps": (1, 2, 3)}),
    "position_at_beep": Kind(
        "both", {"position": tuple(POSITIONS), "direction": MOVING, "colour": tuple(COLOURS)}
    ),
    "caption": Kind(
        "both",
        {"colour": tuple(COLOURS), "direction": MOVING, "beeps": (1, 2, 3, 4), "pitch": tuple(PITCHES)},
        "captioning",
    ),
}

Combo = dict[str, str]  # attribute name -> value (as text)


@dataclass(frozen=True)
class Scene:
    """What a clip shows and sounds: the square's colour in equal time segments, its motion, the beeps."""

    colours: tuple[str, ...]
    direction: str  # one of DIRECTIONS
    beep_times: tuple[float, ...]  # seconds, beep centres
    pitch: str  # one of PITCHES
    motion: tuple[float, float] = (0.0, 1.0)  # fractions of the clip when the square starts and stops moving


@dataclass(frozen=True)
class PlannedTask:
    """A labelled record and the scene its media show."""

    label: dict[str, Any]
    scene: Scene
    sound_in_video: bool = False


# ---------------------------------------------------------------- held-out combinations


def parse_combo(text: str) -> Combo:
    """'colour=red,beeps=2' -> {'colour': 'red', 'beeps': '2'}; raises ValueError naming the bad part."""
    combo: Combo = {}
    for part in text.split(","):
        name, sep, value = (piece.strip() for piece in part.partition("="))
        if not sep or name not in ATTRIBUTE_VALUES:
            raise ValueError(
                f"held-out combination {text!r}: {part!r} is not NAME=VALUE with NAME one of {', '.join(ATTRIBUTE_VALUES)}"
            )
        allowed = [str(v) for v in ATTRIBUTE_VALUES[name]]
        if value not in allowed:
            raise ValueError(
                f"held-out combination {text!r}: {name} must be one of {', '.join(allowed)}, got {value!r}"
            )
        combo[name] = value
    if len(combo) < 2:
        raise ValueError(
            f"held-out combination {text!r}: expected at least two attributes, e.g. colour=red,beeps=2"
        )
    return combo


def matches(attributes: Mapping[str, Any], combo: Combo) -> bool:
    """Whether `attributes` carry every attribute of `combo` with its value."""
    return all(name in attributes and str(attributes[name]) == value for name, value in combo.items())


def _compatible(kind: str, attributes: Mapping[str, Any]) -> bool:
    """position_at_beep: the position must lie on the square's path (left/right for horizontal motion...)."""
    if kind != "position_at_beep":
        return True
    return attributes["position"] == "centre" or attributes["position"] in PATH_ENDS[attributes["direction"]]


def allowed_attributes(kind: str, split: SplitName, holdout: Sequence[Combo]) -> list[dict[str, Any]]:
    """Every attribute combination of `kind` usable in `split`: none matching a held-out combination in train and
    dev, only those matching one in heldout."""
    names = list(KINDS[kind].attributes)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*KINDS[kind].attributes.values())
    ]
    combos = [attributes for attributes in combos if _compatible(kind, attributes)]
    return [a for a in combos if any(matches(a, combo) for combo in holdout) == (split == "heldout")]


# ---------------------------------------------------------------- planning


def _balanced(count: int, size: int, rng: np.random.Generator) -> list[int]:
    """`count` indices into `size` values, each used equally often (+-1), in a seeded order."""
    cycles = [rng.permutation(size) for _ in range(-(-count // size))]
    sequence = np.concatenate(cycles)[:count] if cycles else np.zeros(0, dtype=int)
    return [int(i) for i in rng.permutation(sequence)]


def _spread(count: int, seconds: float, rng: np.random.Generator) -> tuple[float, ...]:
    """`count` beep times spread evenly over the clip, each moved by up to BEEP_JITTER of the spacing."""
    spacing = seconds / count
    return tuple(round((i + 0.5 + rng.uniform(-BEEP_JITTER, BEEP_JITTER)) * spacing, 4) for i in range(count))


def _motion(rng: np.random.Generator) -> tuple[float, float]:
    """When the square moves (fractions of the clip): its timing varies, so where it is at a moment needs the
    picture."""
    start = rng.uniform(*MOTION_START)
    return round(start, 4), round(rng.uniform(start + MIN_MOTION, MOTION_END), 4)


def _pick(values: Sequence[Any], rng: np.random.Generator) -> Any:
    return values[int(rng.integers(len(values)))]


def _others(pool: Sequence[str], answer: str, count: int, rng: np.random.Generator) -> list[str]:
    """`count` values of `pool` other than `answer`, in a seeded order."""
    rest = [value for value in pool if value != answer]
    return [rest[i] for i in rng.permutation(len(rest))[:count]]


def _scene_and_question(
    kind: str, attributes: dict[str, Any], seconds: float, rng: np.random.Generator
) -> tuple[Scene, str, str, list[str]]:
    """The scene of a qa task, its question, the answer text and the 4 other option texts."""
    colour_names = list(COLOURS)
    if kind in ("square_colour", "square_direction"):
        colour, direction = attributes["colour"], attributes["direction"]
        beeps = _spread(int(rng.integers(1, 6)), seconds, rng)
        scene = Scene((colour,), direction, beeps, _pick(list(PITCHES), rng), _motion(rng))
        if kind == "square_colour":
            others = [name.capitalize() for name in _others(colour_names, colour, NUM_OPTIONS - 1, rng)]
            return scene, "What colour is the moving square?", colour.capitalize(), others
        texts = list(DIRECTIONS.values())
        return (
            scene,
            "In which direction does the square move?",
            DIRECTIONS[direction],
            _others(texts, DIRECTIONS[direction], 4, rng),
        )
    if kind in ("beep_count", "beep_pitch"):
        beeps, pitch = attributes["beeps"], attributes["pitch"]
        times = _spread(beeps, seconds, rng)
        scene = Scene((_pick(colour_names, rng),), _pick(MOVING, rng), times, pitch, _motion(rng))
        if kind == "beep_count":
            texts = [word.capitalize() for word in COUNT_WORDS]
            answer = COUNT_WORDS[beeps - 1].capitalize()
            return scene, "How many beeps can be heard?", answer, _others(texts, answer, 4, rng)
        texts = [name.replace("_", " ").capitalize() for name in PITCHES]
        answer = pitch.replace("_", " ").capitalize()
        return scene, "What is the pitch of the beeps?", answer, _others(texts, answer, 4, rng)
    if kind == "colour_at_beep":
        colour, beeps = attributes["colour"], attributes["beeps"]
        segments = sorted(int(s) for s in rng.choice(SEGMENTS, size=beeps, replace=False))
        asked = int(rng.integers(beeps))
        colours = [name for name in _others(colour_names, colour, SEGMENTS - 1, rng)]
        colours.insert(segments[asked], colour)
        length = seconds / SEGMENTS
        times = tuple(
            round((s + 0.5 + rng.uniform(-SEGMENT_JITTER, SEGMENT_JITTER)) * length, 4) for s in segments
        )
        scene = Scene(tuple(colours), _pick(MOVING, rng), times, _pick(list(PITCHES), rng), _motion(rng))
        which = "the beep" if beeps == 1 else f"the {ORDINALS[asked]} beep"
        unseen = _others(colour_names, colour, len(colour_names) - 1, rng)
        distractors = [c for c in colours if c != colour] + [c for c in unseen if c not in colours][:1]
        question = f"What colour was the square when {which} sounded?"
        return scene, question, colour.capitalize(), [c.capitalize() for c in distractors]
    if kind == "position_at_beep":
        position, direction = attributes["position"], attributes["direction"]
        start, end = PATH_ENDS[direction]
        third = {start: 0, "centre": 1, end: 2}[position]
        motion = _motion(rng)
        along = (third + 0.5) / 3 + rng.uniform(-THIRD_JITTER, THIRD_JITTER)  # of the path
        moment = round((motion[0] + along * (motion[1] - motion[0])) * seconds, 4)
        scene = Scene((attributes["colour"],), direction, (moment,), _pick(list(PITCHES), rng), motion)
        texts = list(POSITIONS.values())
        answer = POSITIONS[position]
        return scene, "Where was the square when the beep sounded?", answer, _others(texts, answer, 4, rng)
    raise ValueError(f"unknown qa kind {kind!r}; expected one of {', '.join(KINDS)}")


def caption_references(colour: str, direction: str, beeps: int, pitch: str) -> list[str]:
    """Template reference captions of a caption task's scene."""
    count, pitch_words = COUNT_WORDS[beeps - 1], pitch.replace("_", " ")
    noun = "beep" if beeps == 1 else "beeps"
    verb = "sounds" if beeps == 1 else "sound"
    motion = DIRECTION_PHRASES[direction]
    return [
        f"A {colour} square moves {motion} while {count} {pitch_words} {noun} {verb}.",
        f"{count.capitalize()} {pitch_words} {noun} can be heard as a {colour} square slides {motion} "
        "across a grey background.",
        f"On a grey background, a {colour} square travels {motion}, and the audio has {count} {pitch_words} {noun}.",
    ]


def _plan_task(
    task_id: int,
    kind: str,
    attributes: dict[str, Any],
    position: int | None,
    seconds: float,
    rng: np.random.Generator,
) -> PlannedTask:
    """One labelled record (media paths filled in later) and its scene."""
    record: dict[str, Any] = {"task_id": task_id, "task_type": KINDS[kind].task_type}
    if kind == "caption":
        colour, direction, beeps, pitch = (attributes[k] for k in ("colour", "direction", "beeps", "pitch"))
        scene = Scene((colour,), direction, _spread(beeps, seconds, rng), pitch, _motion(rng))
        record.update(question=CAPTION_QUESTION, video="", audio="", choices=[])
        record["references"] = caption_references(colour, direction, beeps, pitch)
    else:
        assert position is not None
        scene, question, answer, others = _scene_and_question(kind, attributes, seconds, rng)
        texts = others[:position] + [answer] + others[position:]
        record.update(question=question, video="", audio="")
        record["choices"] = [{"choice_id": i, "choice": text} for i, text in enumerate(texts)]
        record.update(correct_answer_choice_id=position, correct_answer=answer)
    record.update(category=KINDS[kind].category, kind=kind, attributes=attributes)
    return PlannedTask(record, scene)


def plan_split(
    seed: int = 0,
    n_tasks: int = 200,
    clip_seconds: float = CLIP_SECONDS,
    split: SplitName = "train",
    holdout: Sequence[str | Combo] = DEFAULT_HOLDOUT,
    sound_in_video_share: float = SOUND_IN_VIDEO_SHARE,
    kind_weights: Mapping[str, int] | None = None,
) -> list[PlannedTask]:
    """The tasks of a split, without rendering any media (a pure function of its arguments).

    Kinds are used equally often (+-1), or in proportion to `kind_weights` (kind -> whole number; a kind not named:
    1; 0 leaves it out), in a seeded order; kinds without a usable attribute combination in this split (e.g. most
    kinds in heldout) are left out.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CODES)}, got {split!r}")
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
    if not MIN_CLIP_SECONDS <= clip_seconds <= MAX_CLIP_SECONDS:
        raise ValueError(
            f"clip_seconds must be in [{MIN_CLIP_SECONDS}, {MAX_CLIP_SECONDS}], got {clip_seconds}"
        )
    if not 0 <= sound_in_video_share <= 1:
        raise ValueError(f"sound_in_video_share must be in [0, 1], got {sound_in_video_share}")
    weights = dict(kind_weights or {})
    unknown = sorted(set(weights) - set(KINDS))
    if unknown or any(not isinstance(w, int) or w < 0 for w in weights.values()):
        raise ValueError(
            f"kind_weights: whole numbers >= 0 for kinds among {', '.join(KINDS)}, got {weights}"
        )
    combos = [parse_combo(c) if isinstance(c, str) else {k: str(v) for k, v in c.items()} for c in holdout]
    allowed = {kind: allowed_attributes(kind, split, combos) for kind in KINDS}
    kinds = [kind for kind in KINDS if allowed[kind]]
    if split != "heldout" and len(kinds) < len(KINDS):
        empty = ", ".join(kind for kind in KINDS if not allowed[kind])
        raise ValueError(f"the held-out combinations leave no {split} task of kind(s) {empty}")
    if not kinds:
        raise ValueError("no held-out combination applies to any kind: the heldout split would be empty")

    drawn = [kind for kind in kinds for _ in range(weights.get(kind, 1))]  # each kind once per unit of weight
    if not drawn:
        raise ValueError(f"kind_weights {weights} leave no kind to draw in the {split} split")
    rng = np.random.default_rng([seed, SPLIT_CODES[split]])
    kind_of = [drawn[i] for i in _balanced(n_tasks, len(drawn), rng)]
    qa_count = sum(KINDS[kind].task_type == "qa" for kind in kind_of)
    positions = iter(_balanced(qa_count, NUM_OPTIONS, rng))
    in_video = set(rng.permutation(n_tasks)[: round(sound_in_video_share * n_tasks)].tolist())
    answers = {}
    for kind in kinds:  # each kind's answers balanced over the answer values it can use here
        answer_name = next(iter(KINDS[kind].attributes))
        values = list(dict.fromkeys(attributes[answer_name] for attributes in allowed[kind]))
        answers[kind] = iter([values[i] for i in _balanced(kind_of.count(kind), len(values), rng)])

    tasks = []
    for index, kind in enumerate(kind_of):
        answer_name = next(iter(KINDS[kind].attributes))
        answer = next(answers[kind])
        choices = [attributes for attributes in allowed[kind] if attributes[answer_name] == answer]
        attributes = dict(_pick(choices, rng))
        position = next(positions) if KINDS[kind].task_type == "qa" else None
        planned = _plan_task(index + 1, kind, attributes, position, clip_seconds, rng)
        name = f"{split}_{index + 1:05d}"
        sound_in_video = index in in_video
        planned.label["video"] = f"video/{name}.mp4"
        planned.label["audio"] = "" if sound_in_video else f"audio/{name}.mp3"
        tasks.append(PlannedTask(planned.label, planned.scene, sound_in_video))
    return tasks


# ---------------------------------------------------------------- rendering


def render_frames(scene: Scene, size: tuple[int, int], fps: float, seconds: float) -> np.ndarray:
    """(T, H, W, 3) uint8: the square (side H/3) moving along its path while the scene's motion lasts (still
    before and after), coloured by time segment."""
    width, height = size
    side = height // 3
    count = max(2, round(fps * seconds))
    clip = np.empty((count, height, width, 3), dtype=np.uint8)
    clip[:] = BACKGROUND
    start, stop = scene.motion
    progress = np.clip((np.arange(count) / (fps * seconds) - start) / (stop - start), 0.0, 1.0)
    span_x, span_y = width - side, height - side
    palette = [COLOURS[name] for name in scene.colours]
    for index, (image, step) in enumerate(zip(clip, progress, strict=True)):
        left, top = span_x // 2, span_y // 2
        if scene.direction in ("right", "left"):
            left = round((step if scene.direction == "right" else 1 - step) * span_x)
        elif scene.direction in ("up", "down"):
            top = round((step if scene.direction == "down" else 1 - step) * span_y)
        image[top : top + side, left : left + side] = palette[index * len(palette) // count]
    return clip


def render_audio(scene: Scene, seconds: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """(samples,) float32: silence with a BEEP_SECONDS tone of the scene's pitch centred at each beep time."""
    wave = np.zeros(round(seconds * rate), dtype=np.float32)
    beep = synth.tone(PITCHES[scene.pitch], BEEP_SECONDS, rate, BEEP_AMPLITUDE)
    for moment in scene.beep_times:
        start = min(max(0, round(moment * rate) - len(beep) // 2), len(wave) - len(beep))
        wave[start : start + len(beep)] = beep
    return wave


def _dump(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_synthetic_split(
    out_dir: str | Path,
    seed: int = 0,
    n_tasks: int = 200,
    clip_seconds: float = CLIP_SECONDS,
    split: SplitName = "train",
    holdout: Sequence[str | Combo] = DEFAULT_HOLDOUT,
    size: tuple[int, int] = SIZE,
    fps: float = FPS,
    sound_in_video_share: float = SOUND_IN_VIDEO_SHARE,
    kind_weights: Mapping[str, int] | None = None,
) -> Path:
    """Write a synthetic split (tasks.json, labels.json, video/, audio/) into `out_dir`; return tasks.json's path."""
    if size[0] < 48 or size[1] < 48 or size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must be even and at least 48x48 (width, height), got {size}")
    tasks = plan_split(seed, n_tasks, clip_seconds, split, holdout, sound_in_video_share, kind_weights)
    out_dir = Path(out_dir)
    (out_dir / "video").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    for task in tasks:
        frames = render_frames(task.scene, size, fps, clip_seconds)
        wave = render_audio(task.scene, clip_seconds)
        track = wave if task.sound_in_video else None
        synth.write_video(out_dir / task.label["video"], frames, fps, audio=track, audio_rate=AUDIO_RATE)
        if not task.sound_in_video:
            synth.write_audio(out_dir / task.label["audio"], wave, AUDIO_RATE)
    labels = [task.label for task in tasks]
    _dump(out_dir / "labels.json", labels)
    _dump(out_dir / "tasks.json", [task_record(label) for label in labels])  # last: marks a complete split
    return out_dir / "tasks.json"


# ---------------------------------------------------------------- command line


def _frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 128x96, got {text!r}")
    return int(width), int(height)


def _kind_weight(text: str) -> tuple[str, int]:
    kind, sep, weight = text.partition("=")
    if not sep or not weight.isdigit():
        raise argparse.ArgumentTypeError(f"expected KIND=N such as colour_at_beep=2, got {text!r}")
    return kind, int(weight)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the tasks.json path, the task counts and the time taken."""
    parser = argparse.ArgumentParser(prog="python -m solution.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output split folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=200, help="number of tasks (default 200)")
    parser.add_argument("--split", choices=tuple(SPLIT_CODES), default="train")
    parser.add_argument("--clip-seconds", type=float, default=CLIP_SECONDS)
    parser.add_argument(
        "--holdout",
        action="append",
        metavar="NAME=VALUE,NAME=VALUE",
        help="held-out combination (repeatable; replaces the defaults)",
    )
    parser.add_argument("--no-holdout", action="store_true", help="hold no combination out")
    parser.add_argument(
        "--kind-weight",
        action="append",
        type=_kind_weight,
        default=[],
        metavar="KIND=N",
        help="draw KIND N times as often as a kind not named (repeatable; 0 leaves it out)",
    )
    parser.add_argument("--frame-size", type=_frame_size, default=SIZE, metavar="WxH", help="default 128x96")
    parser.add_argument("--fps", type=float, default=FPS)
    parser.add_argument(
        "--sound-in-video",
        type=float,
        default=SOUND_IN_VIDEO_SHARE,
        help='share of tasks with audio "" and the sound in the mp4',
    )
    args = parser.parse_args(argv)
    holdout = [] if args.no_holdout else (args.holdout or list(DEFAULT_HOLDOUT))
    started = time.perf_counter()
    try:
        path = make_synthetic_split(
            args.out,
            args.seed,
            args.size,
            args.clip_seconds,
            args.split,
            holdout,
            args.frame_size,
            args.fps,
            args.sound_in_video,
            dict(args.kind_weight),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    labels = json.loads((path.parent / "labels.json").read_text(encoding="utf-8"))
    kinds: dict[str, int] = {}
    for label in labels:
        kinds[label["kind"]] = kinds.get(label["kind"], 0) + 1
    print(path)
    print(
        f"{len(labels)} {args.split} task(s) in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{n} {k}" for k, n in kinds.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
