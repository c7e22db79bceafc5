"""Convert public video QA and captioning annotations into labelled splits in the contest layout.

    python -m solution.converters nextqa --csv val.csv --map map_vid_vidorID.json --media-root NExTVideo --out DIR
    python -m solution.converters captions --json train.json --media-root videos/ --out DIR

NExT-QA (github.com/doc-doc/NExT-QA, `dataset/nextqa/{train,val,test}.csv`): columns
`video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4`; `answer` is the index (0-4) of the
correct option, `type` the question category (CW, CH, TN, TP, TC, DC, DL, DO), `qid` numbers the questions of a
video. `map_vid_vidorID.json` maps the video id to `xxxx/yyyy`, the video being `<media root>/xxxx/yyyy.mp4`.
Each row becomes a qa record with 5 choices (ids 0..4), audio "" (the videos carry their own sound track) and
category = type; labels.json keeps NExT-QA's own key `<video>_<qid>` as `source_id`.

Captions: ActivityNet Captions (`{video_id: {duration, timestamps: [[s, e], ...], sentences: [...]}}`: one
captioning record per video, the reference being its sentences in time order) or Video-ChatGPT VideoInstruct
(`[{"video_id" or "video": ..., "q" or "question": ..., "a" or "answer": ...}]`: one record per video and
question, every answer a reference). The question is "Describe this video in detail." unless the source gives one.

Media are looked up under the media root, placed into the split by `--media` (link, copy or relpath; see
solution.splits) and named relative to it. Missing media are listed (and written to `missing_media.txt`) but do
not stop the conversion unless `--strict`; `--drop-missing` leaves their tasks out.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solution.errors import KitError
from solution.splits import MEDIA_MODES, MediaMode, Split, write_split
from solution.tasks import read_json_file

NEXTQA_COLUMNS = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
NEXTQA_OPTIONS = 5
CAPTION_QUESTION = "Describe this video in detail."
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MISSING_FILE = "missing_media.txt"
SHOWN_MISSING = 10


class ConversionError(KitError):
    """A source annotation file is unusable; the message names the file, the line or entry, and the field."""


@dataclass(frozen=True)
class Conversion:
    """The written split, the media files that were not found, and how many tasks were left out for that."""

    split: Split
    missing: tuple[str, ...]
    dropped: int


def tidy_sentence(text: str, question: bool = False) -> str:
    """`text` stripped, its first letter capitalised, a question ending in '?' (NExT-QA has neither)."""
    text = " ".join(text.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    if question and not text.endswith("?"):
        text += "?"
    return text


# ---------------------------------------------------------------- NExT-QA


def read_nextqa_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a NExT-QA CSV; raises ConversionError when a required column is missing."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in NEXTQA_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise ConversionError(
                    f"NExT-QA file {path}: missing column(s) {', '.join(missing)}; "
                    f"expected a header with {','.join(NEXTQA_COLUMNS)}"
                )
            return list(reader)
    except OSError as error:
        raise ConversionError(f"NExT-QA file {path}: cannot read it ({error.strerror or error})") from None


def read_video_map(path: Path) -> dict[str, str]:
    """NExT-QA's map_vid_vidorID.json: {video id: "xxxx/yyyy"}."""
    document = _read_json(path, "NExT-QA video map")
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ConversionError(
            f'NExT-QA video map {path}: expected a JSON object mapping video ids to paths like "0101/2909445186"'
        )
    return {str(key): value for key, value in document.items()}


def nextqa_records(
    rows: Sequence[dict[str, str]],
    video_map: dict[str, str],
    media_root: Path,
    source: Path,
    tidy: bool = True,
) -> list[dict[str, Any]]:
    """Labelled qa records (task_ids 1..N in row order) with absolute video paths.

    A video id absent from the map is looked for as `<media root>/<video id>.mp4`.
    """
    records = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"NExT-QA file {source} line {line}"
        answer = row["answer"].strip()
        if not answer.isdigit() or not 0 <= int(answer) < NEXTQA_OPTIONS:
            raise ConversionError(f"{where}: answer {answer!r} is not an option index 0-{NEXTQA_OPTIONS - 1}")
        options = [(row[f"a{i}"] or "").strip() for i in range(NEXTQA_OPTIONS)]
        if not row["question"] or not row["question"].strip():
            raise ConversionError(f"{where}: empty question")
        video_id = row["video"].strip()
        relative = video_map.get(video_id, video_id)
        texts = [tidy_sentence(text) for text in options] if tidy else options
        records.append(
            {
                "task_id": len(records) + 1,
                "task_type": "qa",
                "question": tidy_sentence(row["question"], question=True) if tidy else row["question"],
                "video": str(media_root.absolute() / f"{relative}.mp4"),
                "audio": "",
                "choices": [{"choice_id": i, "choice": text} for i, text in enumerate(texts)],
                "correct_answer_choice_id": int(answer),
                "correct_answer": texts[int(answer)],
                "category": row["type"].strip(),
                "source_id": f"{video_id}_{row['qid'].strip()}",
            }
        )
    return records


# ---------------------------------------------------------------- captions


def _read_json(path: Path, what: str) -> Any:
    try:
        return read_json_file(path, what)
    except KitError as error:
        raise ConversionError(str(error)) from None


def find_video(video_id: str, media_root: Path) -> Path:
    """The video file of `video_id` under `media_root`: the id as a path if it has a suffix, else `<id><suffix>`
    for the usual suffixes, also with ActivityNet's `v_` prefix added or removed. The first guess when none exists.
    """
    if Path(video_id).suffix.lower() in VIDEO_SUFFIXES:
        return media_root.absolute() / video_id
    stems = [video_id, video_id[2:] if video_id.startswith("v_") else f"v_{video_id}"]
    for stem in stems:
        for suffix in VIDEO_SUFFIXES:
            path = media_root.absolute() / f"{stem}{suffix}"
            if path.is_file():
                return path
    return media_root.absolute() / f"{video_id}.mp4"


def _caption_record(task_id: int, question: str, video: Path, references: list[str], source_id: str) -> dict:
    return {
        "task_id": task_id,
        "task_type": "captioning",
        "question": question,
        "video": str(video),
        "audio": "",
        "choices": [],
        "references": references,
        "source_id": source_id,
    }


def _is_span(stamp: Any) -> bool:
    return isinstance(stamp, list) and len(stamp) == 2 and all(isinstance(t, (int, float)) for t in stamp)


def activitynet_records(document: Any, media_root: Path, source: Path, question: str) -> list[dict[str, Any]]:
    """One captioning record per video; its reference is the video's sentences joined in time order."""
    if not isinstance(document, dict):
        raise ConversionError(f"ActivityNet Captions file {source}: expected a JSON object keyed by video id")
    records = []
    for video_id, entry in document.items():
        where = f"ActivityNet Captions file {source} entry {video_id!r}"
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise ConversionError(f"{where}: expected 'sentences', a list of strings")
        stamps = entry.get("timestamps") or [[0.0, 0.0]] * len(sentences)
        valid = isinstance(stamps, list) and len(stamps) == len(sentences)
        if not valid or not all(_is_span(stamp) for stamp in stamps):
            raise ConversionError(
                f"{where}: 'timestamps' must hold one [start, end] pair of numbers per sentence"
            )
        ordered = [sentences[i] for i in sorted(range(len(sentences)), key=lambda i: stamps[i][0])]
        paragraph = " ".join(tidy_sentence(text) for text in ordered if text.strip())
        if not paragraph:
            continue
        video = find_video(video_id, media_root)
        records.append(_caption_record(len(records) + 1, question, video, [paragraph], video_id))
    return records


def _field(entry: dict[str, Any], names: Sequence[str], where: str) -> str:
    for name in names:
        if isinstance(entry.get(name), str) and entry[name].strip():
            return entry[name].strip()
    raise ConversionError(f"{where}: expected a non-empty string in {' or '.join(repr(n) for n in names)}")


def videoinstruct_records(
    document: Any, media_root: Path, source: Path, question: str | None
) -> list[dict[str, Any]]:
    """One captioning record per (video, question); every answer to it is a reference.

    `question` replaces the entries' own questions when given (so all answers of a video become references).
    """
    if not isinstance(document, list):
        raise ConversionError(
            f"VideoInstruct file {source}: expected a JSON array of {{video_id, q, a}} entries"
        )
    grouped: dict[tuple[str, str], list[str]] = {}
    for index, entry in enumerate(document):
        where = f"VideoInstruct file {source} entry {index}"
        if not isinstance(entry, dict):
            raise ConversionError(f"{where}: expected a JSON object")
        video_id = _field(entry, ("video_id", "video"), where)
        asked = question or tidy_sentence(_field(entry, ("q", "question"), where), question=True)
        grouped.setdefault((video_id, asked), []).append(_field(entry, ("a", "answer"), where))
    return [
        _caption_record(task_id, asked, find_video(video_id, media_root), answers, video_id)
        for task_id, ((video_id, asked), answers) in enumerate(grouped.items(), start=1)
    ]


def caption_records(
    path: Path, media_root: Path, question: str | None = None, kind: str = "auto"
) -> list[dict[str, Any]]:
    """Captioning records from an ActivityNet Captions or VideoInstruct file (`kind` 'auto' tells by shape)."""
    document = _read_json(path, "captions file")
    if kind == "auto":
        kind = "videoinstruct" if isinstance(document, list) else "activitynet"
    if kind == "activitynet":
        return activitynet_records(document, media_root, path, question or CAPTION_QUESTION)
    if kind == "videoinstruct":
        return videoinstruct_records(document, media_root, path, question)
    raise ValueError(f"unknown captions format {kind!r}; expected auto, activitynet or videoinstruct")


# ---------------------------------------------------------------- writing


def convert(
    records: list[dict[str, Any]],
    out_dir: Path,
    media_mode: MediaMode = "link",
    strict: bool = False,
    drop_missing: bool = False,
) -> Conversion:
    """Write `records` (absolute media paths) as a split; missing media raise (strict), drop tasks, or are listed."""
    missing = list(
        dict.fromkeys(r["video"] for r in records if r["video"] and not Path(r["video"]).is_file())
    )
    if missing and strict:
        shown = "\n  ".join(missing[:SHOWN_MISSING])
        raise ConversionError(f"{len(missing)} media file(s) not found (--strict):\n  {shown}")
    dropped = 0
    if missing and drop_missing:
        absent = set(missing)
        kept = [record for record in records if record["video"] not in absent]
        dropped = len(records) - len(kept)
        records = [{**record, "task_id": number} for number, record in enumerate(kept, start=1)]
    split = write_split(records, out_dir, out_dir, media_mode)
    listing = out_dir / MISSING_FILE
    if missing:
        listing.write_text("".join(f"{path}\n" for path in missing), encoding="utf-8")
    elif listing.exists():
        listing.unlink()
    return Conversion(split, tuple(missing), dropped)


def report(conversion: Conversion) -> str:
    """Lines telling what was written and which media were missing."""
    lines = [f"{conversion.split.root}: {len(conversion.split.records)} task(s) written"]
    if conversion.missing:
        lines.append(
            f"missing media: {len(conversion.missing)} file(s), listed in {conversion.split.root / MISSING_FILE}"
            + (f"; {conversion.dropped} task(s) left out" if conversion.dropped else "")
        )
        lines += [f"  {path}" for path in conversion.missing[:SHOWN_MISSING]]
        if len(conversion.missing) > SHOWN_MISSING:
            lines.append(f"  ... and {len(conversion.missing) - SHOWN_MISSING} more")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solution.converters", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    nextqa = commands.add_parser("nextqa", help="NExT-QA multiple-choice CSV + map_vid_vidorID.json")
    nextqa.add_argument("--csv", type=Path, required=True, help="train.csv, val.csv or test.csv")
    nextqa.add_argument("--map", type=Path, required=True, help="map_vid_vidorID.json")
    nextqa.add_argument("--raw-text", action="store_true", help="keep questions and options as written")
    captions = commands.add_parser("captions", help="ActivityNet Captions or VideoInstruct JSON")
    captions.add_argument("--json", type=Path, required=True)
    captions.add_argument("--format", choices=("auto", "activitynet", "videoinstruct"), default="auto")
    captions.add_argument(
        "--question", help=f"the instruction of every task (default: the source's, else {CAPTION_QUESTION!r})"
    )
    for command in (nextqa, captions):
        command.add_argument("--media-root", type=Path, required=True, help="folder the videos are under")
        command.add_argument("--out", type=Path, required=True, help="output split folder")
        command.add_argument("--media", choices=MEDIA_MODES, default="link", help="how media are placed")
        command.add_argument("--strict", action="store_true", help="fail when any media file is missing")
        command.add_argument(
            "--drop-missing", action="store_true", help="leave out tasks whose video is missing"
        )
    return parser


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The labelled records the parsed command line asks for."""
    if args.command == "nextqa":
        rows, video_map = read_nextqa_csv(args.csv), read_video_map(args.map)
        return nextqa_records(rows, video_map, args.media_root, args.csv, tidy=not args.raw_text)
    return caption_records(args.json, args.media_root, args.question, args.format)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a conversion; return the exit status (0 written, 1 an unusable source or --strict with missing media)."""
    args = build_parser().parse_args(argv)
    try:
        conversion = convert(_records(args), args.out, args.media, args.strict, args.drop_missing)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report(conversion))
    return 0


if __name__ == "__main__":
    sys.exit(main())
