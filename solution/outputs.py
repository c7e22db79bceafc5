"""The contest's output files, written atomically (a temporary file, fsync, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

OUTPUT_DIR = "output_path_from_job"
CLASSIFICATION_FILE = "for_classification_metric.json"
GENERATIVE_FILE = "for_generative_metric.json"
ERRORS_FILE = "errors.json"
SUMMARY_FILE = "run_summary.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either the old file or the complete new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # backslashreplace: a lone surrogate (legal in a JSON string, e.g. "\ud800" in a task_id) is written
        # as the JSON escape it came from instead of failing to encode
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(
    out_dir: Path, qa: dict[str, int], captions: dict[str, str], errors: list[dict], summary: dict
) -> dict[str, Path]:
    """Write both metric files (always, even when empty), errors.json and run_summary.json."""
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in qa.values()), "QA answers must be ints"
    assert all(isinstance(v, str) and v.strip() for v in captions.values()), (
        "captions must be non-empty strings"
    )
    paths = {
        "classification": Path(out_dir) / CLASSIFICATION_FILE,
        "generative": Path(out_dir) / GENERATIVE_FILE,
        "errors": Path(out_dir) / ERRORS_FILE,
        "summary": Path(out_dir) / SUMMARY_FILE,
    }
    write_json_atomic(paths["classification"], qa)
    write_json_atomic(paths["generative"], captions)
    write_json_atomic(paths["errors"], errors)
    write_json_atomic(paths["summary"], summary)
    return paths
