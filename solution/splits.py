"""Labelled splits in the contest layout: load, validate, split by video, merge, write, describe.

A split is a folder holding `tasks.json` (what run.py reads: no answers), `labels.json` (the same records with
their answer keys), `video/` and `audio/`. Media paths in the records are relative to the folder.

    python -m solution.splits validate DIR [DIR ...]
    python -m solution.splits stats DIR
    python -m solution.splits split DIR --train-out A --dev-out B [--dev-fraction 0.2] [--seed 0]
    python -m solution.splits merge DIR DIR [...] --out OUT

Media are placed into written splits by `--media`: `link` (symbolic links to the source files, the default),
`copy`, or `relpath` (no files placed: the records point at the source files through relative paths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from solution.errors import KitError
from solution.tasks import read_json_file, resolve_media, validation_errors

TASK_KEYS = ("task_id", "task_type", "question", "video", "audio", "choices")
"""The keys of a tasks.json record (the contest's input); every other key of a labelled record is a label."""
MEDIA_KEYS = ("video", "audio")
MEDIA_MODES = ("link", "copy", "relpath")
MediaMode = Literal["link", "copy", "relpath"]
TASKS_FILE, LABELS_FILE = "tasks.json", "labels.json"
SHOWN_PROBLEMS = 20  # problems listed in an error message before "... and N more"


class SplitError(KitError):
    """A split folder is unusable: a file is missing or invalid, or tasks.json and labels.json disagree."""


@dataclass(frozen=True)
class Split:
    """A labelled split: its folder and its labelled records (as in labels.json)."""

    root: Path
    records: tuple[dict[str, Any], ...]

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The tasks.json records: the labelled records without their label keys."""
        return [task_record(record) for record in self.records]

    def media_path(self, record: dict[str, Any], key: str) -> Path | None:
        """Absolute path of a record's `key` ('video' or 'audio') medium; None when the record's value is ""."""
        return resolve_media(record[key], self.root)

    def missing_media(self) -> list[str]:
        """Media paths named by the records that are not files, each once, in record order."""
        paths = [self.media_path(record, key) for record in self.records for key in MEDIA_KEYS]
        return list(dict.fromkeys(str(path) for path in paths if path is not None and not path.is_file()))


def task_record(record: dict[str, Any]) -> dict[str, Any]:
    """The tasks.json record of a labelled record: only the contest's task keys, in their order."""
    return {key: record[key] for key in TASK_KEYS if key in record}


def _dump(path: Path, document: Any) -> None:
    """Write JSON deterministically (UTF-8, 2-space indent, trailing newline)."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _problem_text(problems: Sequence[str]) -> str:
    """Indented problem lines, at most SHOWN_PROBLEMS of them."""
    shown = [f"  {line}" for line in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        shown.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more")
    return "\n".join(shown)


# ---------------------------------------------------------------- loading


def load_split(directory: str | os.PathLike[str], check_media: bool = True) -> Split:
    """Load and validate the split in `directory`.

    Both files are validated against their schemas (media existence too, unless `check_media` is False) and must
    describe the same tasks: the same task_ids, and for each the same task keys (labels.json may add labels).
    Raises SplitError naming the file and listing the problems.
    """
    root = Path(directory)
    if not root.is_dir():
        raise SplitError(
            f"split {root}: not a folder; expected a folder holding {TASKS_FILE} and {LABELS_FILE}"
        )
    media_root = root.absolute() if check_media else None
    documents = {}
    for name, kind in ((TASKS_FILE, "tasks"), (LABELS_FILE, "labels")):
        path = root / name
        try:
            document = read_json_file(path, f"{kind} file")
        except KitError as error:
            raise SplitError(f"split {root}: {error}") from None
        problems = validation_errors(kind, document, media_root)  # type: ignore[arg-type]
        if problems:
            raise SplitError(
                f"split {root}: {name} has {len(problems)} problem(s):\n{_problem_text(problems)}"
            )
        documents[kind] = document
    problems = _agreement_problems(documents["tasks"], documents["labels"])
    if problems:
        raise SplitError(
            f"split {root}: {TASKS_FILE} and {LABELS_FILE} describe different tasks:\n{_problem_text(problems)}"
        )
    return Split(root, tuple(documents["labels"]))


def _agreement_problems(tasks: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[str]:
    """Differences between the tasks of tasks.json and labels.json, matched by str(task_id)."""
    by_id = {str(record["task_id"]): record for record in labels}
    task_ids = {str(record["task_id"]) for record in tasks}
    problems = [
        f"{LABELS_FILE} has no record with task_id {key!r} (in {TASKS_FILE})"
        for key in (str(record["task_id"]) for record in tasks)
        if key not in by_id
    ]
    problems += [
        f"{TASKS_FILE} has no record with task_id {key!r} (in {LABELS_FILE})"
        for key in by_id
        if key not in task_ids
    ]
    for record in tasks:
        label = by_id.get(str(record["task_id"]))
        if label is None:
            continue
        for key in TASK_KEYS:
            if record.get(key) != label.get(key):
                problems.append(
                    f"task_id {record['task_id']!r}: {key} differs: {TASKS_FILE} has {json.dumps(record.get(key))[:60]}, "
                    f"{LABELS_FILE} has {json.dumps(label.get(key))[:60]}"
                )
    return problems


# ---------------------------------------------------------------- writing


def _destination(value: str, key: str, inside: bool) -> str:
    """Where a medium goes in the written split: its own relative path when it lies inside the media root,
    else `video/<name>` or `audio/<name>`."""
    if inside:
        return Path(os.path.normpath(value)).as_posix()
    return f"{key}/{Path(value).name}"


def _unique(destination: str, taken: set[str]) -> str:
    """`destination`, or `stem_2.ext`, `stem_3.ext`, ... when another source already took it."""
    if destination not in taken:
        return destination
    path = Path(destination)
    number = 2
    while (candidate := (path.parent / f"{path.stem}_{number}{path.suffix}").as_posix()) in taken:
        number += 1
    return candidate


def _place(source: Path, target: Path, mode: MediaMode) -> None:
    """Put `source` at `target` as a symbolic link (absolute target) or a copy; a no-op when they are one file."""
    if target.exists() and source.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if mode == "link":
        try:
            target.symlink_to(source.absolute())
            return
        except OSError:  # no symbolic links on this file system: copy instead
            pass
    shutil.copyfile(source, target)


def write_split(
    records: Iterable[dict[str, Any]],
    media_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    media_mode: MediaMode = "link",
) -> Split:
    """Write labelled `records` as a split in `out_dir`: tasks.json (task keys only), labels.json, media.

    Media paths in `records` are relative to `media_root` or absolute. A medium inside `media_root` keeps its
    relative path; one outside it goes to `video/` or `audio/` under its file name (`name_2.mp4` when two
    sources share a name). `media_mode` 'link' and 'copy' place the files; 'relpath' places nothing and points
    the records at the source files. Missing sources are not placed: `Split.missing_media()` lists them.
    """
    if media_mode not in MEDIA_MODES:
        raise ValueError(f"media_mode must be one of {', '.join(MEDIA_MODES)}, got {media_mode!r}")
    media_root, out_dir = Path(media_root).absolute(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    placed: dict[Path, str] = {}  # source -> its path in the written split
    taken: set[str] = set()
    written = []
    for record in records:
        record = dict(record)
        for key in MEDIA_KEYS:
            value = record.get(key)
            if not isinstance(value, str) or not value:
                continue
            source = resolve_media(value, media_root)
            assert source is not None
            if source not in placed:
                if media_mode == "relpath":
                    placed[source] = Path(os.path.relpath(source, out_dir.absolute())).as_posix()
                else:
                    inside = not Path(value).is_absolute() and source.is_relative_to(media_root)
                    placed[source] = _unique(_destination(value, key, inside), taken)
                    taken.add(placed[source])
                    if source.is_file():
                        _place(source, out_dir / placed[source], media_mode)
            record[key] = placed[source]
        written.append(record)
    _dump(out_dir / LABELS_FILE, written)
    _dump(out_dir / TASKS_FILE, [task_record(record) for record in written])
    return Split(out_dir, tuple(written))


# ---------------------------------------------------------------- splitting and merging


def _video_key(split: Split, record: dict[str, Any]) -> str:
    """What groups records of one video: its resolved path, or the task itself when it has no video."""
    path = split.media_path(record, "video")
    return str(path) if path is not None else f"task:{record['task_id']}"


def split_by_video(split: Split, dev_fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """(train, dev): the records of a seeded share of the videos go to dev, no video is in both.

    Videos are shuffled by `seed` and taken for dev until their tasks reach `dev_fraction` of all tasks
    (at least one video when dev_fraction > 0). Both keep the records' order and the split's root.
    """
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    groups: dict[str, int] = Counter(_video_key(split, record) for record in split.records)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    target = dev_fraction * len(split.records)
    dev_keys: set[str] = set()
    count = 0
    for index in order:
        if count >= target or (dev_fraction == 0):
            break
        dev_keys.add(keys[index])
        count += groups[keys[index]]
    train = tuple(r for r in split.records if _video_key(split, r) not in dev_keys)
    dev = tuple(r for r in split.records if _video_key(split, r) in dev_keys)
    return Split(split.root, train), Split(split.root, dev)


def _int_id(task_id: Any) -> int | None:
    return task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else None


def merge_splits(
    splits: Sequence[Split], out_dir: str | os.PathLike[str], media_mode: MediaMode = "link"
) -> tuple[Split, list[str]]:
    """Merge `splits` into one written to `out_dir`; return it and notes saying what was changed.

    A task_id already used by an earlier record gets the next free integer id (noted). Media are placed into
    the merged folder by `media_mode` (see `write_split`); two different files with one name get `name_2.ext`.
    """
    used = {str(record["task_id"]) for split in splits for record in split.records}
    next_id = max([_int_id(record["task_id"]) or 0 for split in splits for record in split.records] + [0]) + 1
    seen: set[str] = set()
    records, notes, renumbered = [], [], 0
    for split in splits:
        for record in split.records:
            record = dict(record)
            key = str(record["task_id"])
            if key in seen:
                while str(next_id) in used:
                    next_id += 1
                record["task_id"] = next_id
                used.add(str(next_id))
                renumbered += 1
            seen.add(str(record["task_id"]))
            for media in MEDIA_KEYS:
                path = split.media_path(record, media)
                record[media] = "" if path is None else str(path)
            records.append(record)
    if renumbered:
        notes.append(f"renumbered {renumbered} task(s) whose task_id was already used")
    merged = write_split(records, out_dir, out_dir, media_mode)
    sources = {path for path in (merged.media_path(r, k) for r in merged.records for k in MEDIA_KEYS) if path}
    verb = {"link": "linked", "copy": "copied", "relpath": "referenced by relative path"}[media_mode]
    notes.append(f"{verb} {len(sources)} media file(s) into {out_dir}")
    missing = merged.missing_media()
    if missing:
        notes.append(f"{len(missing)} media file(s) missing: {', '.join(missing[:5])}")
    return merged, notes


# ---------------------------------------------------------------- statistics


def _probe(path: Path) -> tuple[float | None, bool]:
    """(duration in seconds or None, whether it has an audio stream) from the container header, no decoding."""
    try:
        with av.open(str(path)) as container:
            duration = None
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif container.streams.video and container.streams.video[0].duration is not None:
                stream = container.streams.video[0]
                duration = float(stream.duration * stream.time_base)
            return duration, bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return None, False


def _sorted_counts(values: Iterable[Any]) -> dict[str, int]:
    counts = Counter(str(value) for value in values)
    return {key: counts[key] for key in sorted(counts)}


def split_stats(split: Split) -> dict[str, Any]:
    """Counts and shares describing a split (JSON-ready).

    Task types, categories, the correct choice ids of qa tasks, video durations from the container headers
    (no decoding), the share of tasks with an audio file and with a sound track inside their video.
    """
    records = split.records
    qa = [record for record in records if record["task_type"] == "qa"]
    videos = {path for path in (split.media_path(record, "video") for record in records) if path is not None}
    probes = {path: _probe(path) for path in sorted(videos)}
    durations = [duration for duration, _ in probes.values() if duration is not None]
    with_track = sum(
        1 for record in records if (path := split.media_path(record, "video")) is not None and probes[path][1]
    )
    with_file = sum(1 for record in records if record.get("audio"))
    total = max(1, len(records))
    return {
        "root": str(split.root),
        "tasks": len(records),
        "task_types": _sorted_counts(record["task_type"] for record in records),
        "categories": _sorted_counts(record.get("category", "(none)") for record in records),
        "correct_choice_ids": _sorted_counts(record.get("correct_answer_choice_id") for record in qa),
        "choices_per_qa_task": _sorted_counts(len(record["choices"]) for record in qa),
        "videos": len(videos),
        "unreadable_videos": len(videos) - len(durations),
        "video_seconds": {
            "min": round(min(durations), 3) if durations else None,
            "mean": round(float(np.mean(durations)), 3) if durations else None,
            "max": round(max(durations), 3) if durations else None,
            "total": round(sum(durations), 3),
        },
        "share_with_audio_file": round(with_file / total, 4),
        "share_with_video_sound_track": round(with_track / total, 4),
    }


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solution.splits", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check split folders (schemas, media, tasks = labels)")
    validate.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    validate.add_argument("--skip-media", action="store_true", help="do not check that media files exist")
    stats = commands.add_parser("stats", help="print statistics of a split as JSON")
    stats.add_argument("dir", type=Path, metavar="DIR")
    split = commands.add_parser("split", help="split by video into train and dev splits")
    split.add_argument("dir", type=Path, metavar="DIR")
    split.add_argument("--train-out", type=Path, required=True)
    split.add_argument("--dev-out", type=Path, required=True)
    split.add_argument("--dev-fraction", type=float, default=0.2, help="share of tasks for dev (default 0.2)")
    split.add_argument("--seed", type=int, default=0)
    merge = commands.add_parser(
        "merge", help="merge splits into one folder (task_ids renumbered on collision)"
    )
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    merge.add_argument("--out", type=Path, required=True)
    for command in (split, merge):
        command.add_argument("--media", choices=MEDIA_MODES, default="link", help="how media are placed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; return the exit status (0 fine, 1 an invalid split)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            status = 0
            for directory in args.dirs:
                try:
                    split = load_split(directory, check_media=not args.skip_media)
                except SplitError as error:
                    print(f"FAILED {error}")
                    status = 1
                    continue
                types = Counter(record["task_type"] for record in split.records)
                detail = ", ".join(f"{types[name]} {name}" for name in sorted(types))
                print(f"OK {directory}: {len(split.records)} labelled task(s) ({detail})")
            return status
        if args.command == "stats":
            print(json.dumps(split_stats(load_split(args.dir)), indent=2))
        elif args.command == "split":
            source = load_split(args.dir)
            train, dev = split_by_video(source, args.dev_fraction, args.seed)
            for part, out in ((train, args.train_out), (dev, args.dev_out)):
                write_split(part.records, source.root, out, args.media)
                print(f"{out}: {len(part.records)} task(s)")
        else:
            merged, notes = merge_splits([load_split(d) for d in args.dirs], args.out, args.media)
            print(f"{args.out}: {len(merged.records)} task(s)")
            for note in notes:
                print(f"note: {note}")
    except SplitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
