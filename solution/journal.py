"""Crash-safe resume: an append-only journal of finished tasks in the output folder.

`journal.jsonl` starts with a header line naming the inputs (the tasks file's path and the sha256 of its
bytes, a hash of the config, the number of records); every finished task then adds one JSON line, flushed and
fsynced before the next task starts. A run killed at any moment leaves at most a torn last line, which the
next run ignores. A rerun on the same inputs reuses the journalled answers and computes only the rest; a
journal written for other inputs is not reused (the run says so and starts a new one). The config hash covers
the config's fields, not the contents of weight files: after changing weights in place, pass --no_resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .config import KitConfig

JOURNAL_FILE = "journal.jsonl"
VERSION = 1
NOT_HASHED = {
    ("runtime", "threads"),
    ("runtime", "time_budget_s"),
    ("runtime", "resume"),
    ("runtime", "batch_size"),
    ("runtime", "prefetch"),
    ("runtime", "compile"),
    ("name",),
}
"""Config fields that do not change a journalled answer: a resumed run may change them (batching and prefetch
change answers by float rounding at most, see runtime.batch_mode)."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def config_sha256(cfg: KitConfig) -> str:
    """A hash of every config field that can change an answer (all but NOT_HASHED)."""
    data = cfg.to_dict()
    for path in NOT_HASHED:
        section = data
        for part in path[:-1]:
            section = section[part]
        section.pop(path[-1], None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def journal_header(tasks_path: Path, cfg: KitConfig, n_records: int) -> dict[str, Any]:
    return {
        "journal": VERSION,
        "tasks_path": str(Path(tasks_path).resolve()),  # media paths are relative to its folder
        "tasks_sha256": file_sha256(tasks_path),
        "config_sha256": config_sha256(cfg),
        "records": n_records,
    }


def read_journal(path: Path, header: dict[str, Any]) -> tuple[dict[int, dict[str, Any]], int, str]:
    """Entries by record index, the byte length of the usable part of the file, and a note for the log.

    Nothing is reused (no entries, length 0) when the file is missing, unreadable or its header differs from
    `header`. Reading stops at the first line that is not complete JSON (a torn last line of a killed run).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, 0, "no journal: starting afresh"
    except OSError as exc:
        return {}, 0, f"journal {path} unreadable ({exc.strerror or exc}): starting afresh"
    lines = data.split(b"\n")
    try:
        found = json.loads(lines[0])
    except ValueError:
        found = None
    if found != header:
        note = f"journal {path} was written for other inputs (tasks file or config differ): not reused"
        return {}, 0, note + ", starting afresh"
    entries: dict[int, dict[str, Any]] = {}
    length = len(lines[0]) + 1
    for line in lines[1:-1]:  # the last piece has no newline: empty, or a torn line
        try:
            entry = json.loads(line)
            index = entry["index"]
        except (ValueError, KeyError, TypeError):
            break
        if not isinstance(index, int) or not 0 <= index < header["records"]:
            break
        entries[index] = entry
        length += len(line) + 1
    torn = len(data) - length
    note = f"journal {path}: reusing {len(entries)} finished task(s)"
    return entries, length, note + (f"; ignored {torn} byte(s) of an unfinished line" if torn else "")


class Journal:
    """Appends one fsynced JSON line per finished task."""

    def __init__(self, path: Path, header: dict[str, Any], keep_bytes: int):
        """Open `path` to append after its first `keep_bytes` bytes (0: write a new journal with `header`)."""
        self.path = Path(path)
        if keep_bytes:
            os.truncate(self.path, keep_bytes)  # drop a torn last line before appending
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(header) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # a new header appears whole, replacing any older journal
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def append(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")  # ASCII: any text (even a lone surrogate) round-trips
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def open_journal(
    out_dir: Path, header: dict[str, Any], resume: bool
) -> tuple[Journal, dict[int, dict[str, Any]], str]:
    """The journal of `out_dir` ready for appending, the entries this run may reuse, a note for the log."""
    path = Path(out_dir) / JOURNAL_FILE
    if resume:
        entries, keep, note = read_journal(path, header)
    else:
        entries, keep, note = {}, 0, "resume disabled (runtime.resume=false): starting a new journal"
    return Journal(path, header, keep), entries, note
