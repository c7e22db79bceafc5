"""Check tasks, labels or predictions files against the kit's schemas and rules.

    python -m solution.validate tasks data/tasks.json
    python -m solution.validate predictions output_path_from_job/*.json

Prints every violation as `FILE: JSON-path: message`. Exit status: 0 when every file is valid (one OK line per
file), 1 when any file has violations, 2 when any file cannot be read or parsed (that wins over 1).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from solution.errors import KitError
from solution.tasks import (
    Kind,
    PredictionKind,
    prediction_errors,
    prediction_kind,
    read_json_file,
    validation_errors,
)

PREDICTION_FILE_KINDS: dict[str, PredictionKind] = {
    "for_classification_metric.json": "classification",
    "for_generative_metric.json": "generative",
    "acc_output.json": "classification",  # the names METRICS.md uses
    "gen_output.json": "generative",
}
"""Output files whose name fixes their kind; any other predictions file's kind is detected from its values."""

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def file_errors(kind: Kind, path: Path, check_media: bool = True) -> tuple[Any, list[str]]:
    """The document in `path` and its violations; raises TaskFileError when the file can't be read or parsed."""
    document = read_json_file(path, f"{kind} file")
    if kind == "predictions":
        return document, prediction_errors(document, PREDICTION_FILE_KINDS.get(path.name))
    root = path.absolute().parent if check_media else None
    return document, validation_errors(kind, document, root)


def summary(kind: Kind, document: Any, path: Path) -> str:
    """The one-line description of a valid file."""
    if kind == "predictions":
        detected = PREDICTION_FILE_KINDS.get(path.name) or prediction_kind(document) or "empty"
        return f"OK {path}: {detected} predictions, {len(document)} answer(s)"
    counts = Counter(record["task_type"] for record in document)
    detail = ", ".join(f"{counts[task_type]} {task_type}" for task_type in sorted(counts))
    return f"OK {path}: {kind} file, {len(document)} record(s)" + (f" ({detail})" if detail else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solution.validate",
        description="Validate tasks, labels or predictions JSON files; print every violation with its JSON path.",
    )
    parser.add_argument("kind", choices=["tasks", "labels", "predictions"], help="what the files hold")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSON files to check")
    parser.add_argument(
        "--skip-media",
        action="store_true",
        help="tasks/labels: do not check that video/audio files exist (relative to each file's folder)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the files named in `argv`; return the exit status (0 valid, 1 violations, 2 unreadable)."""
    args = build_parser().parse_args(argv)
    status = EXIT_OK
    for path in args.files:
        try:
            document, problems = file_errors(args.kind, path, check_media=not args.skip_media)
        except KitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        if problems:
            for line in problems:
                print(f"{path}: {line}")
            print(f"FAILED {path}: {len(problems)} problem(s)")
            status = max(status, EXIT_INVALID)
        else:
            print(summary(args.kind, document, path))
    return status


if __name__ == "__main__":
    sys.exit(main())
