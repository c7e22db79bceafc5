"""Task records: load the tasks file, validate records against the JSON schemas, build `Task` objects.

The schemas live in `solution/schemas/` (Draft 2020-12). What JSON Schema cannot express is checked here:
unique `task_id` values (compared as `str(task_id)`, the output key), unique `choice_id` values within a
record, a label's `correct_answer_choice_id` being one of the record's choices, and media files existing.
Integers are strict: JSON `1.0` and `true` are not integers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry, Resource

from solution.errors import TaskError, TaskFileError

TASK_TYPES = ("qa", "captioning")  # the enum of tasks.schema.json#/$defs/task/properties/task_type
MAX_FILE_BYTES = 512 * 1024 * 1024
"""Input JSON files larger than this are refused (the contest's tasks file is a few MB at most)."""

SCHEMA_FILES = {
    "tasks": "tasks.schema.json",
    "labels": "labels.schema.json",
    "predictions": "predictions.schema.json",
}
Kind = Literal["tasks", "labels", "predictions"]
PredictionKind = Literal["classification", "generative"]
PathElem = str | int


@dataclass(frozen=True)
class Choice:
    """One answer option of a qa task."""

    choice_id: int
    text: str


@dataclass(frozen=True)
class Task:
    """A validated task record with media paths resolved to absolute paths."""

    task_id: int | str
    task_type: str  # "qa" | "captioning"
    question: str
    video: Path | None  # None when the record's video is ""
    audio: Path | None  # None when the record's audio is ""
    choices: tuple[Choice, ...]
    index: int  # position in the tasks file
    raw: dict[str, Any] = field(repr=False, compare=False)  # the record as given

    @property
    def key(self) -> str:
        """The key of this task's answer in the output files: `str(task_id)`."""
        return str(self.task_id)


# ---------------------------------------------------------------- schemas


def _is_strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


StrictValidator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)
"""Draft 2020-12 where "integer" means a JSON integer literal (`1.0` is refused, as a predictions writer must)."""


@cache
def load_schema(kind: Kind) -> dict[str, Any]:
    """The JSON schema of `kind` ('tasks', 'labels' or 'predictions'), read once from `solution/schemas/`."""
    if kind not in SCHEMA_FILES:
        raise ValueError(f"unknown schema {kind!r}; expected one of {', '.join(SCHEMA_FILES)}")
    text = resources.files("solution").joinpath("schemas", SCHEMA_FILES[kind]).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _registry() -> Registry:
    resources_ = [Resource.from_contents(load_schema(kind)) for kind in SCHEMA_FILES]  # type: ignore[arg-type]
    return Registry().with_resources((resource.id(), resource) for resource in resources_)


@cache
def schema_validator(kind: Kind, definition: str | None = None) -> Validator:
    """A validator for a whole `kind` document, or for one of its `$defs` (e.g. 'task', 'classification')."""
    schema_id = load_schema(kind)["$id"]
    if definition is None:
        schema: dict[str, Any] = {"$ref": schema_id}
    else:
        if definition not in load_schema(kind).get("$defs", {}):
            raise ValueError(f"schema {kind!r} has no $defs/{definition}")
        schema = {"$ref": f"{schema_id}#/$defs/{definition}"}
    return StrictValidator(schema, registry=_registry())


# ---------------------------------------------------------------- error formatting


def json_path(elems: Iterable[PathElem], base: str = "$") -> str:
    """A JSON path such as `$[3].choices[1].choice_id`; keys that are not identifiers are quoted: `$["12"]`."""
    out = base
    for elem in elems:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", elem):
            out += f".{elem}"
        else:
            out += "[" + json.dumps(elem) + "]"
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ValidationError) -> tuple[list[PathElem], str]:
    """The path (relative to the validated instance) and a readable message for one schema violation."""
    path: list[PathElem] = list(error.absolute_path)
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "required":
        # jsonschema reports each missing key as its own error ("'video' is a required property")
        absent = [k for k in expected if isinstance(value, dict) and k not in value]
        missing = next(
            (k for k in absent if error.message.startswith(repr(k))), absent[0] if absent else None
        )
        if missing is not None:
            return [*path, missing], "missing required key"
    if keyword == "type":
        types = " or ".join(expected) if isinstance(expected, list) else expected
        return path, f"expected {types}, got {_json_type(value)} {_short(value)}"
    if keyword == "enum":
        return path, f"expected one of {', '.join(_short(v) for v in expected)}, got {_short(value)}"
    if keyword == "minLength" and expected == 1:
        return path, "expected a non-empty string"
    if keyword == "minItems":
        return path, f"expected at least {expected} item(s), got {len(value)}"
    if "propertyNames" in error.absolute_schema_path:
        return path, f"invalid key {_short(value)}: expected a non-empty string"
    return path, error.message


def _schema_items(
    validator: Validator, instance: Any, prefix: Sequence[PathElem] = ()
) -> list[tuple[int, str]]:
    """Schema violations of `instance` as (record index, "path: message") pairs; index -1 for the document."""
    items = []
    for error in validator.iter_errors(instance):
        path, message = _describe(error)
        full = [*prefix, *path]
        index = full[0] if full and isinstance(full[0], int) else -1
        items.append((index, f"{json_path(full)}: {message}"))
    return items


def _in_order(items: Iterable[tuple[int, str]]) -> list[str]:
    """The lines grouped by record, in file order (stable: each record keeps its own order)."""
    return [line for _, line in sorted(items, key=lambda item: item[0])]


# ---------------------------------------------------------------- checks beyond the schema


def check_unique_ids(records: Sequence[Any]) -> list[str]:
    """Problems with duplicate task_ids, compared as output keys `str(task_id)`; both positions are named.

    `records` are raw records (dicts) or `Task` objects; records without a usable task_id are skipped.
    """
    return [line for _, line in _duplicate_id_items(records)]


def _duplicate_id_items(records: Sequence[Any]) -> list[tuple[int, str]]:
    first_seen: dict[str, int] = {}
    items = []
    for position, record in enumerate(records):
        if isinstance(record, Task):
            task_id: Any = record.task_id
            index = record.index
        elif isinstance(record, dict):
            task_id, index = record.get("task_id"), position
        else:
            continue
        if not (_is_strict_integer(None, task_id) or isinstance(task_id, str)):
            continue
        key = str(task_id)
        if key in first_seen:
            line = (
                f"$[{index}].task_id: duplicate task_id {_short(task_id)}: "
                f"output key {key!r} is already used by $[{first_seen[key]}].task_id"
            )
            items.append((index, line))
        else:
            first_seen[key] = index
    return items


def _choice_problems(record: Any, prefix: Sequence[PathElem]) -> list[str]:
    """Duplicate choice ids, and a label's correct_answer_choice_id that is not among the choices."""
    if not isinstance(record, dict) or not isinstance(record.get("choices"), list):
        return []
    first_seen: dict[int, int] = {}
    problems = []
    for position, choice in enumerate(record["choices"]):
        choice_id = choice.get("choice_id") if isinstance(choice, dict) else None
        if not _is_strict_integer(None, choice_id):
            continue
        if choice_id in first_seen:
            here = json_path([*prefix, "choices", position, "choice_id"])
            there = json_path([*prefix, "choices", first_seen[choice_id], "choice_id"])
            problems.append(f"{here}: duplicate choice_id {choice_id} (also at {there})")
        else:
            first_seen[choice_id] = position
    correct = record.get("correct_answer_choice_id")
    if record.get("task_type") == "qa" and _is_strict_integer(None, correct) and correct not in first_seen:
        ids = ", ".join(str(i) for i in first_seen) or "none"
        path = json_path([*prefix, "correct_answer_choice_id"])
        problems.append(f"{path}: {correct} is not one of the record's choice ids ({ids})")
    return problems


def _media_problems(record: Any, prefix: Sequence[PathElem], root: Path) -> list[str]:
    if not isinstance(record, dict):
        return []
    problems = []
    for name in ("video", "audio"):
        value = record.get(name)
        if isinstance(value, str) and value:
            path = resolve_media(value, root)
            if path is not None and not path.is_file():
                problems.append(f"{json_path([*prefix, name])}: media file not found: {path}")
    return problems


def resolve_media(value: str, root: Path) -> Path | None:
    """A record's media path made absolute: relative paths are taken from `root`; "" gives None."""
    if value == "":
        return None
    path = Path(value)
    if not path.is_absolute():
        path = Path(root).absolute() / path
    return Path(os.path.normpath(path))


# ---------------------------------------------------------------- files and records


def read_json_file(path: str | os.PathLike[str], what: str = "tasks file") -> Any:
    """Read a JSON file; raise TaskFileError naming the file (and `what` it is) when it cannot be used."""
    path = Path(path)
    try:
        if path.is_dir():
            raise TaskFileError(f"{what} {path}: is a folder, expected a JSON file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TaskFileError(
                f"{what} {path}: {size / 2**20:.0f} MiB is larger than the "
                f"{MAX_FILE_BYTES // 2**20} MiB limit; expected a JSON file of at most a few MB"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise TaskFileError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise TaskFileError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{what} {path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TaskFileError(
            f"{what} {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise TaskFileError(f"{what} {path}: not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def load_task_file(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a tasks file, unvalidated (`parse_task` checks each one).

    Raises TaskFileError when the file is missing, unreadable, too large, not JSON, or not a JSON array.
    """
    document = read_json_file(path, "tasks file")
    if not isinstance(document, list):
        raise TaskFileError(
            f"tasks file {path}: $: expected a JSON array of task records, got {_json_type(document)}"
        )
    return document


def task_problems(record: Any, index: int) -> list[str]:
    """Every problem of one task record ("path: message" lines), schema and beyond-schema checks together."""
    prefix = [index]
    problems = _in_order(_schema_items(schema_validator("tasks", "task"), record, prefix))
    return problems + _choice_problems(record, prefix)


def parse_task(record: Any, index: int, root: Path) -> Task:
    """Validate one record and build its Task; media paths are resolved against `root` (the tasks file's folder).

    Raises TaskError listing every violation with its JSON path, the record's index and task_id if known.
    """
    problems = task_problems(record, index)
    if problems:
        task_id = record.get("task_id") if isinstance(record, dict) else None
        usable = _is_strict_integer(None, task_id) or isinstance(task_id, str)
        known = f" (task_id {_short(task_id)})" if usable else ""
        raise TaskError(f"invalid task record at index {index}{known}:\n  " + "\n  ".join(problems))
    return Task(
        task_id=record["task_id"],
        task_type=record["task_type"],
        question=record["question"],
        video=resolve_media(record["video"], root),
        audio=resolve_media(record["audio"], root),
        choices=tuple(Choice(choice["choice_id"], choice["choice"]) for choice in record["choices"]),
        index=index,
        raw=record,
    )


# ---------------------------------------------------------------- whole documents


def prediction_kind(document: Any) -> PredictionKind | None:
    """'generative' if every answer is a string, 'classification' if none is; None if empty or mixed."""
    if not isinstance(document, dict) or not document:
        return None
    strings = sum(isinstance(value, str) for value in document.values())
    if strings == len(document):
        return "generative"
    return "classification" if strings == 0 else None


def prediction_errors(document: Any, expected: PredictionKind | None = None) -> list[str]:
    """Violations of a predictions document; its kind is `expected`, or detected from its values."""
    if not isinstance(document, dict):
        return [f"$: expected a JSON object mapping task keys to answers, got {_json_type(document)}"]
    kind = expected or prediction_kind(document)
    problems = []
    if kind is None and document:
        strings = sum(isinstance(value, str) for value in document.values())
        others = len(document) - strings
        kind = "generative" if strings > others else "classification"
        problems.append(
            f"$: mixed answer types ({strings} string(s), {others} other): a predictions file holds only "
            "integers (classification) or only strings (generative)"
        )
    validator = schema_validator("predictions", kind or "classification")
    return problems + _in_order(_schema_items(validator, document))


def validation_errors(kind: Kind, document: Any, root: Path | None = None) -> list[str]:
    """Every violation in a tasks, labels or predictions document, as "path: message" lines.

    For tasks and labels: the schema, unique task_ids, unique choice ids, correct choice among the choices,
    and (when `root` is given) media files existing relative to `root`.
    """
    if kind == "predictions":
        return prediction_errors(document)
    if kind not in ("tasks", "labels"):
        raise ValueError(f"unknown document kind {kind!r}; expected tasks, labels or predictions")
    if not isinstance(document, list):
        noun = "task records" if kind == "tasks" else "labelled task records"
        return [f"$: expected a JSON array of {noun}, got {_json_type(document)}"]
    items = _schema_items(schema_validator(kind), document)
    for index, record in enumerate(document):
        items += [(index, line) for line in _choice_problems(record, [index])]
        if root is not None:
            items += [(index, line) for line in _media_problems(record, [index], root)]
    items += _duplicate_id_items(document)
    return _in_order(items)
