"""The submission ZIP: build it, then rehearse the contest's run of it offline.

    python -m solution.submission build --preset contest [--adapter DIR] [--include-weights DIR ...]
                                        [--wheels DIR] --out submission.zip
    python -m solution.submission check submission.zip --tasks SPLIT_OR_TASKS_JSON [--weights-root DIR]
                                        [--n-tasks 5000]

ZIP layout (the contest unpacks it and runs ``python run.py --input_path ...`` at its root)::

    run.py, run.sh              the entry points
    default_config              one line: the preset (or ``checkpoint``) that run.py uses without --config
    solution/                   the kit (no __pycache__)
    checkpoint/                 with --adapter: config.yaml, adapter/, fusion.safetensors
    weights/...                 the weights folders the config names by relative path, and --include-weights
    vendor/                     with --wheels: the wheels unpacked; run.py puts vendor/ on sys.path first
    metadata.json               with --with-metadata only (a submission in the custom image, docker/)
    submission_manifest.json    every other file's path, size and sha256, and what the build was

Config paths under ``/app/`` are the contest image's pre-installed weights: they are not packed, the manifest
lists them. Wheels are unpacked at build time (pip's own layout for pure wheels) rather than installed at start:
nothing runs pip, writes to the image or needs the network when the contest starts. Compiled wheels only work
on the Python version and platform named in their file name (the build says so). Caches, media, outputs,
version control, virtual environments and anything that looks like a secret are refused (listed, not packed).

``check`` unpacks the ZIP into a temporary folder and verifies the manifest, then runs ``python run.py
--input_path TASKS`` there as the contest would, with the network cut: in a separate network namespace
(``unshare -rn``, loopback up) where the OS allows it, and always with ``solution/netguard.py`` installed as
``sitecustomize`` (refuses and logs any Python-level connection attempt, so even a swallowed one fails the
check). Caches (HF_HOME, TORCH_HOME, XDG_CACHE_HOME) point at an empty folder. Config paths under ``/app/`` are
mapped to ``--weights-root``: each becomes a ``--set section.field=<weights-root>/...`` argument of run.py (the
only difference from the contest's command; the check prints the command). It then validates both output files,
checks that every task has a well-typed answer, scores with ``solution.score`` when the split has labels.json,
and projects the mean seconds per task to ``--n-tasks`` tasks against the 3.5-hour limit.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import math
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from solution import KIT_ROOT
from solution.config import CHECKPOINT_CONFIG, load_config, resolve_path
from solution.errors import KitError
from solution.outputs import CLASSIFICATION_FILE, GENERATIVE_FILE, OUTPUT_DIR, SUMMARY_FILE

MAX_ZIP_BYTES = 5 * 10**9
"""The contest's limit on the submission ZIP (5 GB, taken as decimal gigabytes: the stricter reading)."""
TIME_LIMIT_SECONDS = 3.5 * 3600
"""The contest's limit for the whole test set."""
MANIFEST_FILE = "submission_manifest.json"
DEFAULT_CONFIG_FILE = "default_config"
"""Read by run.py (``default_config()``): the preset or kit-relative config run.py uses without --config."""
CHECKPOINT_DIR = "checkpoint"
VENDOR_DIR = "vendor"
YAML_CONFIG_FILE = "submission_config.yaml"
METADATA_FILE = "metadata.json"
"""The custom-image metadata (series convention); packed only with --with-metadata."""
CONTEST_APP_ROOT = "/app/"
"""Where the contest image keeps its pre-installed weights (CONTEST.md)."""
ENTRY_FILES = ("run.py", "run.sh")
RUN_EXIT_MEANINGS = {
    1: "the model could not be built; every task got its fallback answer",
    2: "unusable tasks file or config",
}
"""run.py's exit statuses other than 0 (its docstring)."""
PATH_FIELDS = (
    ("vision", "path"),
    ("audio", "path"),
    ("llm", "path"),
    ("llm", "adapter"),
    ("fusion", "weights"),
)
"""Config fields that name files or folders."""

STORED_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".npz", ".zip", ".whl", ".so"}
"""Packed without compression (already dense; deflating them costs minutes and saves little)."""

CACHE_DIRS = {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".ipynb_checkpoints",
    ".cache",
    ".tox",
}
VCS_DIRS = {".git", ".hg", ".svn"}
VENV_DIRS = {".venv", "venv", ".conda"}
SECRET_DIRS = {".ssh", ".aws", ".gnupg", ".docker", ".huggingface", ".kaggle"}
MEDIA_SUFFIXES = {
    ".mp4", ".mkv", ".avi", ".mov", ".webm", ".flv", ".3gp", ".ogv", ".m4v",
    ".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac", ".opus",
}  # fmt: skip
OUTPUT_NAMES = {CLASSIFICATION_FILE, GENERATIVE_FILE, "acc_output.json", "gen_output.json", "error.json"}
SECRET_PATTERNS = (
    ".env", ".env.*", "*.env", ".envrc", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", ".netrc", ".pypirc", ".npmrc", ".git-credentials",
    "token", "tokens", "token.txt", "*.token", "*_token", "*-token", "*_token.txt",
)  # fmt: skip
PUBLIC_NAMES = {"cacert.pem"}
"""Public files that match a secret pattern (certifi's CA bundle, needed by vendored HTTP libraries)."""
SECRET_WORDS = ("credential", "secret")
TRAINING_STATE = ("trainer_state.pt", "rng_state_*.pt")  # checkpoint.py's resume state: not needed to answer
"""Also refused when in a file's name, except in Python source (modules such as botocore's credentials.py)."""


class SubmissionError(KitError):
    """The submission cannot be built (missing input, size limit) or the ZIP is unusable."""


def _log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------- what is refused


def refusal_reason(relpath: str | PurePosixPath) -> str | None:
    """Why a file (path relative to the kit root, '/'-separated) must not go into the ZIP; None when it may."""
    parts = PurePosixPath(relpath).parts
    folders, name = [p.lower() for p in parts[:-1]], parts[-1].lower() if parts else ""
    if any(p in CACHE_DIRS for p in folders) or name.endswith((".pyc", ".pyo")):
        return "cache"
    if any(p in VCS_DIRS for p in folders):
        return "version control"
    if any(p in VENV_DIRS for p in folders) or name == "pyvenv.cfg":
        return "virtual environment"
    if any(p in SECRET_DIRS for p in folders):
        return "secret"
    if OUTPUT_DIR in folders or name in OUTPUT_NAMES:
        return "outputs"
    if PurePosixPath(name).suffix in MEDIA_SUFFIXES:
        return "media"
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in TRAINING_STATE):
        return "training state"
    if name in PUBLIC_NAMES:
        return None
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_PATTERNS):
        return "secret"
    if not name.endswith(".py") and any(word in name for word in SECRET_WORDS):
        return "secret"
    return None


def _dir_refusal(relpath: PurePosixPath) -> str | None:
    """Refusal of a whole folder (pruned from the walk), judged from its own name."""
    return refusal_reason(relpath / "x") if relpath.parts else None


# ---------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Source:
    """One file to pack: a file on disk, generated bytes, or a member of a wheel."""

    size: int
    path: Path | None = None
    data: bytes | None = None
    wheel_member: tuple[Path, str] | None = None
    mode: int = 0o644

    def open(self) -> IO[bytes]:
        if self.path is not None:
            return open(self.path, "rb")
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.wheel_member is not None
        wheel, member = self.wheel_member
        return _WheelMemberReader(wheel, member)


class _WheelMemberReader(io.RawIOBase):
    """A wheel member as a readable stream (the wheel stays open while it is read)."""

    def __init__(self, wheel: Path, member: str):
        self._zip = zipfile.ZipFile(wheel)
        self._fh = self._zip.open(member)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._fh.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._fh.close()
        self._zip.close()
        super().close()


def _file_source(path: Path) -> Source:
    st = path.stat()
    return Source(size=st.st_size, path=path, mode=0o755 if st.st_mode & stat.S_IXUSR else 0o644)


@dataclass
class BuildResult:
    zip_path: Path
    default_config: str
    files: list[dict[str, Any]]
    """Manifest entries: path, size, sha256."""
    refused: list[tuple[str, str]]
    """(path, reason) of every file or folder left out."""
    contest_paths: list[str]
    """Config paths under /app/: expected in the contest image, not packed."""
    zip_bytes: int
    breakdown: dict[str, list[int]]
    """Top-level entry -> [files, unpacked bytes, bytes in the ZIP]."""
    notes: list[str] = field(default_factory=list)


class _Packer:
    """Collects arcname -> Source, applying the refusal rules."""

    def __init__(self) -> None:
        self.files: dict[str, Source] = {}
        self.refused: list[tuple[str, str]] = []

    def add_file(self, arcname: str, source: Source) -> None:
        reason = refusal_reason(arcname)
        if reason:
            self.refused.append((arcname, reason))
        else:
            self.files[arcname] = source

    def add_tree(self, arc_prefix: str, folder: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(folder):
            rel = PurePosixPath(arc_prefix) / Path(dirpath).relative_to(folder).as_posix()
            for d in sorted(dirnames):
                reason = _dir_refusal(rel / d)
                if reason:
                    self.refused.append((f"{(rel / d).as_posix()}/", reason))
                    dirnames.remove(d)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_file():
                    self.add_file((rel / name).as_posix(), _file_source(path))

    def add_path(self, arcname: str, path: Path) -> None:
        if path.is_dir():
            self.add_tree(arcname, path)
        else:
            self.add_file(arcname, _file_source(path))


def _arcname_in_kit(path: Path, kit_root: Path) -> str | None:
    try:
        return path.resolve().relative_to(kit_root.resolve()).as_posix()
    except ValueError:
        return None


def _resolve_config(preset: str, adapter: Path | None, kit_root: Path, packer: _Packer):
    """The config the ZIP will run by default, and the line for default_config; packs a YAML or checkpoint."""
    if adapter is not None:
        adapter = Path(adapter)
        if not (adapter / CHECKPOINT_CONFIG).is_file():
            raise SubmissionError(
                f"--adapter {adapter}: not a checkpoint folder (no {CHECKPOINT_CONFIG} inside)"
            )
        cfg = load_config(adapter)
        for section, key in (("llm", "adapter"), ("fusion", "weights")):
            value = getattr(getattr(cfg, section), key)
            if value and _arcname_in_kit(Path(value), adapter) is None:
                raise SubmissionError(
                    f"--adapter {adapter}: {CHECKPOINT_CONFIG} names {section}.{key}={value}, outside the "
                    "checkpoint folder; name it relative to the folder so that the ZIP carries it"
                )
            if value and not Path(value).exists():
                raise SubmissionError(f"--adapter {adapter}: {section}.{key}={value} does not exist")
        packer.add_tree(CHECKPOINT_DIR, adapter)
        return cfg, CHECKPOINT_DIR
    if preset.endswith((".yaml", ".yml")):
        path = Path(preset)
        if not path.is_file():
            raise SubmissionError(f"--preset {preset}: no such YAML file")
        packer.add_file(YAML_CONFIG_FILE, _file_source(path))
        return load_config(path), YAML_CONFIG_FILE
    preset_file = kit_root / "solution" / "presets" / f"{preset}.yaml"
    if not preset_file.is_file():
        known = sorted(p.stem for p in (kit_root / "solution" / "presets").glob("*.yaml"))
        raise SubmissionError(f"unknown preset {preset!r}; valid presets: {', '.join(known)}")
    return load_config(preset_file), preset


def _config_paths(cfg, kit_root: Path, packer: _Packer, skip: set[str]) -> list[str]:
    """Pack the weights the config names by relative path; return the /app/ paths it expects in the image."""
    contest_paths = []
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if not value or value in skip:
            continue
        name = f"{section}.{key}={value}"
        if value.startswith(CONTEST_APP_ROOT):
            contest_paths.append(value)
            continue
        if Path(value).is_absolute():
            raise SubmissionError(
                f"{name}: an absolute path outside {CONTEST_APP_ROOT} does not exist in the contest; "
                "put the folder under the kit root (e.g. weights/) and name it relative to the kit root"
            )
        path = resolve_path(value, kit_root)
        arcname = _arcname_in_kit(path, kit_root)
        if arcname is None:
            raise SubmissionError(f"{name}: resolves to {path}, outside the kit root {kit_root}")
        if not path.exists():
            raise SubmissionError(
                f"{name}: {path} does not exist, so it cannot be packed (for the pocket weights and Whisper "
                "tiny.en: `make weights`, i.e. python -m solution.weights prepare pocket)"
            )
        packer.add_path(arcname, path)
    return contest_paths


def _wheel_tags(wheel: Path) -> tuple[str, str, str]:
    parts = wheel.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise SubmissionError(f"{wheel}: not a wheel file name (name-version-python-abi-platform.whl)")
    return parts[-3], parts[-2], parts[-1]


def _add_wheels(wheels_dir: Path, packer: _Packer, notes: list[str]) -> list[dict[str, Any]]:
    """Unpack every .whl of `wheels_dir` into vendor/ (purelib and platlib; scripts and data files dropped)."""
    wheels = sorted(Path(wheels_dir).glob("*.whl"))
    if not wheels:
        raise SubmissionError(f"--wheels {wheels_dir}: no .whl files there")
    records = []
    for wheel in wheels:
        py, abi, platform = _wheel_tags(wheel)
        pure = abi == "none" and platform == "any"
        if not pure:
            notes.append(
                f"{wheel.name} is compiled ({py}-{abi}-{platform}): it works only where the contest image's "
                "Python and platform match those tags"
            )
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                parts = PurePosixPath(info.filename).parts
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue  # scripts, headers, data: not importable code
                    parts = parts[2:]
                arcname = PurePosixPath(VENDOR_DIR, *parts).as_posix()
                packer.add_file(arcname, Source(size=info.file_size, wheel_member=(wheel, info.filename)))
        records.append({"file": wheel.name, "sha256": _sha256_file(wheel), "pure": pure})
    return records


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _git_commit(kit_root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(kit_root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _top_level(arcname: str) -> str:
    head, sep, _ = arcname.partition("/")
    return f"{head}/" if sep else head


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _zipinfo(arcname: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same inputs, same ZIP
    info.external_attr = (stat.S_IFREG | mode) << 16
    stored = PurePosixPath(arcname).suffix in STORED_SUFFIXES
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    return info


def build_submission(
    out: Path,
    preset: str = "contest",
    *,
    adapter: Path | None = None,
    include_weights: Sequence[Path] = (),
    wheels: Path | None = None,
    with_metadata: bool = False,
    kit_root: Path = KIT_ROOT,
    max_bytes: int = MAX_ZIP_BYTES,
) -> BuildResult:
    """Write the submission ZIP to `out` (see the module docstring for its layout) and return what went in."""
    kit_root, out = Path(kit_root), Path(out)
    for name in (*ENTRY_FILES, "solution/__init__.py"):
        if not (kit_root / name).is_file():
            raise SubmissionError(f"{kit_root} is not the kit's root: {name} is missing")
    packer, notes = _Packer(), []
    cfg, default = _resolve_config(preset, adapter, kit_root, packer)
    for name in ENTRY_FILES:
        packer.add_file(name, _file_source(kit_root / name))
    packer.add_file(DEFAULT_CONFIG_FILE, Source(size=len(default) + 1, data=f"{default}\n".encode()))
    packer.add_tree("solution", kit_root / "solution")
    if with_metadata:
        problems = metadata_problems(kit_root / METADATA_FILE)
        if problems:
            raise SubmissionError(f"--with-metadata: {'; '.join(problems)}")
        packer.add_file(METADATA_FILE, _file_source(kit_root / METADATA_FILE))
    own = {cfg.llm.adapter, cfg.fusion.weights} if adapter is not None else set()
    contest_paths = _config_paths(cfg, kit_root, packer, skip=own)
    for folder in include_weights:
        folder = Path(folder)
        if not folder.exists():
            raise SubmissionError(f"--include-weights {folder}: no such file or folder")
        packer.add_path(_arcname_in_kit(folder, kit_root) or f"weights/{folder.resolve().name}", folder)
    wheel_records = _add_wheels(wheels, packer, notes) if wheels is not None else []

    stored = sum(
        s.size for a, s in packer.files.items() if _zipinfo(a, 0).compress_type == zipfile.ZIP_STORED
    )
    if stored > max_bytes:
        raise SubmissionError(
            f"the files packed without compression alone take {_fmt_bytes(stored)}, over the "
            f"{_fmt_bytes(max_bytes)} limit:\n{format_breakdown(_breakdown(packer.files))}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    entries = []
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for arcname in sorted(packer.files):
                source = packer.files[arcname]
                h, size = hashlib.sha256(), 0
                with (
                    source.open() as src,
                    zf.open(_zipinfo(arcname, source.mode), "w", force_zip64=True) as dst,
                ):
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        h.update(chunk)
                        size += len(chunk)
                        dst.write(chunk)
                entries.append({"path": arcname, "size": size, "sha256": h.hexdigest()})
            manifest = {
                "format": 1,
                "default_config": default,
                "preset": None if adapter is not None else preset,
                "checkpoint": str(adapter) if adapter is not None else None,
                "contest_paths": contest_paths,
                "wheels": wheel_records,
                "git_commit": _git_commit(kit_root),
                "files": entries,
            }
            zf.writestr(_zipinfo(MANIFEST_FILE, 0o644), json.dumps(manifest, indent=1) + "\n")
            breakdown = _breakdown_from_zip(zf.infolist())
        zip_bytes = tmp.stat().st_size
        if zip_bytes > max_bytes:
            raise SubmissionError(
                f"the ZIP is {_fmt_bytes(zip_bytes)}, over the {_fmt_bytes(max_bytes)} limit:\n"
                f"{format_breakdown(breakdown)}"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return BuildResult(out, default, entries, packer.refused, contest_paths, zip_bytes, breakdown, notes)


def metadata_problems(path: Path) -> list[str]:
    """Violations of metadata.json against solution/schemas/metadata.schema.json (empty when valid)."""
    from jsonschema import Draft202012Validator

    schema = json.loads(
        (Path(__file__).parent / "schemas" / "metadata.schema.json").read_text(encoding="utf-8")
    )
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{path}: unreadable ({exc})"]
    return [
        f"{path}: {'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
        for e in Draft202012Validator(schema).iter_errors(document)
    ]


def _breakdown(files: dict[str, Source]) -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    for arcname, source in files.items():
        row = table.setdefault(_top_level(arcname), [0, 0, 0])
        row[0] += 1
        row[1] += source.size
    return table


def _breakdown_from_zip(infos: Iterable[zipfile.ZipInfo]) -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    for info in infos:
        row = table.setdefault(_top_level(info.filename), [0, 0, 0])
        row[0] += 1
        row[1] += info.file_size
        row[2] += info.compress_size
    return table


def format_breakdown(table: dict[str, list[int]]) -> str:
    """The size report: one line per top-level file or folder of the ZIP, largest first, and the total."""
    lines = [f"  {'top-level':<28} {'files':>6} {'unpacked':>10} {'in ZIP':>10}"]
    for name, (n, raw, packed) in sorted(table.items(), key=lambda kv: (-kv[1][1], kv[0])):
        lines.append(f"  {name:<28} {n:>6} {_fmt_bytes(raw):>10} {_fmt_bytes(packed):>10}")
    n, raw, packed = (sum(row[i] for row in table.values()) for i in range(3))
    lines.append(f"  {'total':<28} {n:>6} {_fmt_bytes(raw):>10} {_fmt_bytes(packed):>10}")
    return "\n".join(lines)


def format_build(result: BuildResult, max_bytes: int = MAX_ZIP_BYTES) -> str:
    lines = [
        f"Wrote {result.zip_path}: {len(result.files) + 1} files, {_fmt_bytes(result.zip_bytes)} "
        f"({100 * result.zip_bytes / max_bytes:.2f}% of the {_fmt_bytes(max_bytes)} limit); "
        f"run.py defaults to --config {result.default_config}",
        "Size by top-level folder:",
        format_breakdown(result.breakdown),
    ]
    if result.contest_paths:
        lines.append("Expected in the contest image (not packed): " + ", ".join(result.contest_paths))
    if result.refused:
        lines.append(f"Refused {len(result.refused)} file(s)/folder(s), not packed:")
        lines += [f"  refused {path} ({reason})" for path, reason in result.refused]
    lines += [f"Note: {note}" for note in result.notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- check


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    network: str = ""
    command: list[str] = field(default_factory=list)
    wall_seconds: float | None = None
    mean_seconds_per_task: float | None = None
    projected_seconds: float | None = None
    score_report: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return not self.problems


def _safe_members(zf: zipfile.ZipFile) -> list[str]:
    bad = []
    for name in zf.namelist():
        p = PurePosixPath(name)
        if p.is_absolute() or ".." in p.parts or "\\" in name:
            bad.append(name)
    return bad


def verify_manifest(root: Path) -> list[str]:
    """Problems of an unpacked submission against its manifest: missing, changed or unlisted files."""
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return [
            f"manifest: {MANIFEST_FILE} is missing from the ZIP (build it with python -m solution.submission)"
        ]
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"manifest: {MANIFEST_FILE} is unreadable ({exc})"]
    problems, listed = [], set()
    for entry in entries:
        rel = entry["path"]
        listed.add(rel)
        path = root / rel
        if not path.is_file():
            problems.append(f"manifest: {rel} is listed in {MANIFEST_FILE} but missing from the ZIP")
        elif path.stat().st_size != entry["size"]:
            problems.append(
                f"manifest: {rel} has {path.stat().st_size} bytes, the manifest says {entry['size']}"
            )
        elif _sha256_file(path) != entry["sha256"]:
            problems.append(
                f"manifest: {rel} does not match its sha256 in the manifest (changed after the build)"
            )
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST_FILE and rel not in listed:
            problems.append(f"manifest: {rel} is in the ZIP but not in the manifest")
    return problems


def unshare_works() -> tuple[bool, str]:
    """Whether `unshare -rn` can make a network namespace here, and why not."""
    if shutil.which("unshare") is None:
        return False, "no unshare command"
    try:
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    if probe.returncode != 0:
        return False, probe.stderr.strip() or f"exit status {probe.returncode}"
    return True, ""


def _zip_config(root: Path, overrides: Sequence[str]):
    """The config run.py in the unpacked ZIP uses by default (its default_config), with the check's overrides."""
    marker = root / DEFAULT_CONFIG_FILE
    value = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    value = value or "pocket"
    candidate = root / value
    if candidate.exists():
        source = candidate
    else:
        source = root / "solution" / "presets" / f"{value}.yaml"
        if not source.is_file():
            raise SubmissionError(
                f"{DEFAULT_CONFIG_FILE} names {value!r}: neither a file or folder in the ZIP nor a preset in "
                f"solution/presets/ (the ZIP has {', '.join(p.stem for p in (root / 'solution/presets').glob('*.yaml'))})"
            )
    return load_config(source, list(overrides)), value


def _map_contest_paths(cfg, root: Path, weights_root: Path | None, report: CheckReport) -> list[str]:
    """--set overrides that move /app/... paths under --weights-root; problems for paths that are missing."""
    overrides = []
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if not value:
            continue
        name = f"{section}.{key}={value}"
        if value.startswith(CONTEST_APP_ROOT):
            if weights_root is None:
                if not Path(value).exists():
                    report.problems.append(
                        f"config: {name} is a contest-image path that is not on this machine; pass --weights-root "
                        f"DIR (a folder holding the contest image's {CONTEST_APP_ROOT} weights)"
                    )
                continue
            mapped = Path(weights_root).resolve() / value[len(CONTEST_APP_ROOT) :]
            if not mapped.exists():
                report.problems.append(f"config: {name} maps to {mapped} under --weights-root: not there")
            overrides.append(f"{section}.{key}={mapped}")
        elif not Path(value).is_absolute() and not resolve_path(value, root).exists():
            report.problems.append(f"config: {name} is not in the ZIP (the run would fail to load it)")
    return overrides


def _task_keys(tasks: list[Any], keying: str) -> list[tuple[str, dict]]:
    """(output key, record) of every well-formed qa/captioning record."""
    out = []
    for index, record in enumerate(tasks):
        if not isinstance(record, dict) or record.get("task_type") not in ("qa", "captioning"):
            continue
        if keying == "position":
            out.append((str(index), record))
        elif isinstance(record.get("task_id"), int | str) and not isinstance(record.get("task_id"), bool):
            out.append((str(record["task_id"]), record))
    return out


def answer_problems(tasks: list[Any], qa: dict[str, Any], captions: dict[str, Any], keying: str) -> list[str]:
    """Every task without a well-typed answer: QA a valid int choice_id, captioning a non-empty string."""
    problems = []
    for key, record in _task_keys(tasks, keying):
        if record["task_type"] == "qa":
            answer = qa.get(key)
            ids = {c.get("choice_id") for c in record.get("choices") or [] if isinstance(c, dict)}
            if not isinstance(answer, int) or isinstance(answer, bool):
                problems.append(
                    f"answers: qa task {key} has no int answer in {CLASSIFICATION_FILE} (got {answer!r})"
                )
            elif ids and answer not in ids:
                problems.append(
                    f"answers: qa task {key} answered {answer}, not one of its choice ids {sorted(ids)}"
                )
        else:
            answer = captions.get(key)
            if not isinstance(answer, str) or not answer.strip():
                problems.append(
                    f"answers: captioning task {key} has no caption in {GENERATIVE_FILE} ({answer!r})"
                )
    return problems


def _network_attempts(log: Path) -> list[str]:
    if not log.is_file():
        return []
    lines = []
    for raw in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        lines.append(f"{entry.get('call')} {entry.get('target')} from {entry.get('where', '?')}")
    return lines


def _foreign_imports(imports_prefix: Path, root: Path) -> list[str]:
    """Modules the run imported from this development checkout instead of the unpacked ZIP."""
    foreign = set()
    checkout = KIT_ROOT.resolve()
    env_prefixes = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    for report in imports_prefix.parent.glob(f"{imports_prefix.name}.*"):
        for name, file in json.loads(report.read_text(encoding="utf-8")).items():
            if not os.path.isabs(file):
                continue  # e.g. torch.ops: a nominal, relative __file__
            path = Path(file).resolve()
            inside_env = any(path.is_relative_to(p) for p in env_prefixes)
            if path.is_relative_to(checkout) and not path.is_relative_to(root.resolve()) and not inside_env:
                foreign.add(f"{name} ({path})")
    return sorted(foreign)


def _tail(path: Path, n: int = 25) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    return "\n".join(f"    | {line}" for line in lines[-n:])


def _speed(report: CheckReport, summary: dict[str, Any], n_tasks: int, limit: float, log) -> None:
    mean = float(summary.get("mean_seconds_per_task") or 0.0)
    ran = int(summary.get("tasks") or 0)
    startup = max(0.0, (report.wall_seconds or 0.0) - mean * ran)
    projected = startup + mean * n_tasks
    report.mean_seconds_per_task, report.projected_seconds = mean, projected
    fits = math.floor((limit - startup) / mean) if mean > 0 else None
    verdict = "within" if projected <= limit else "OVER"
    log(
        f"[check] speed: {mean:.3f} s per task (mean over {ran} tasks, {SUMMARY_FILE}); start-up {startup:.1f} s "
        f"(imports, model load). Projected for {n_tasks} tasks: {projected / 3600:.2f} h, {verdict} the "
        f"{limit / 3600:.1f} h limit" + (f" (at most {fits} tasks fit)" if fits is not None else "")
        + ". Measured on this machine, not on the contest's A100."
    )  # fmt: skip
    if projected > limit:
        report.warnings.append(
            f"projected time {projected / 3600:.2f} h for {n_tasks} tasks is over the {limit / 3600:.1f} h limit"
        )


def check_submission(
    zip_path: Path,
    tasks: Path,
    *,
    labels: Path | None = None,
    weights_root: Path | None = None,
    n_tasks: int = 5000,
    overrides: Sequence[str] = (),
    network: str = "auto",
    python: str = sys.executable,
    keep: Path | None = None,
    timeout: float = TIME_LIMIT_SECONDS,
    coco: bool = False,
    log: Callable[[str], None] = _log,
) -> CheckReport:
    """Unpack, verify, run run.py offline as the contest would, validate, score and time; see the module doc."""
    zip_path, tasks = Path(zip_path), Path(tasks)
    if tasks.is_dir():
        labels = labels or (tasks / "labels.json" if (tasks / "labels.json").is_file() else None)
        tasks = tasks / "tasks.json"
    elif labels is None and (tasks.parent / "labels.json").is_file():
        labels = tasks.parent / "labels.json"
    if not zip_path.is_file():
        raise SubmissionError(f"{zip_path}: no such ZIP")
    if not tasks.is_file():
        raise SubmissionError(f"--tasks {tasks}: no such tasks file")
    tasks = tasks.resolve()
    report = CheckReport()
    with tempfile.TemporaryDirectory(prefix="submission-check-") as tmp_name:
        tmp = Path(tmp_name)
        root = Path(keep).resolve() if keep is not None else tmp / "solution"
        if root.exists() and any(root.iterdir()):
            raise SubmissionError(f"--keep {root}: the folder is not empty")
        root.mkdir(parents=True, exist_ok=True)

        # 1. unpack and verify
        try:
            with zipfile.ZipFile(zip_path) as zf:
                unsafe = _safe_members(zf)
                if unsafe:
                    report.problems.append(f"zip: unsafe member names (absolute or '..'): {unsafe[:5]}")
                    return report
                report.problems += [
                    f"zip: refused file {name} ({reason})"
                    for name in zf.namelist()
                    if not name.endswith("/") and (reason := refusal_reason(name))
                ]
                zf.extractall(root)
                for info in zf.infolist():
                    if (info.external_attr >> 16) & stat.S_IXUSR:
                        (root / info.filename).chmod(0o755)
        except zipfile.BadZipFile as exc:
            raise SubmissionError(f"{zip_path}: not a ZIP ({exc})") from None
        log(f"[check] unpacked {zip_path} into {root}")
        if not (root / "run.py").is_file():
            report.problems.append("zip: run.py is not at the ZIP's root")
        report.problems += verify_manifest(root)
        if report.problems:
            log("[check] the ZIP itself is broken: not running it")
            return report
        log(f"[check] manifest: every file present, sizes and sha256 match ({MANIFEST_FILE})")

        # 2. the config run.py will use, /app paths mapped to --weights-root
        try:
            cfg, default = _zip_config(root, overrides)
        except KitError as exc:
            report.problems.append(f"config: {exc}")
            return report
        run_overrides = list(overrides) + _map_contest_paths(cfg, root, weights_root, report)
        if report.problems:
            return report
        log(f"[check] config: run.py defaults to --config {default} (the ZIP's {DEFAULT_CONFIG_FILE})")

        # 3. run, network cut
        guard_dir, cache_dir = tmp / "netguard", tmp / "empty-cache"
        guard_dir.mkdir()
        cache_dir.mkdir()
        shutil.copyfile(Path(__file__).with_name("netguard.py"), guard_dir / "sitecustomize.py")
        logs = root.parent / f"{root.name}-check-logs" if keep is not None else tmp
        logs.mkdir(exist_ok=True)
        net_log, imports_prefix, run_log = (
            logs / "network-attempts.jsonl",
            logs / "imports.json",
            logs / "run.log",
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env.update(
            PYTHONPATH=str(guard_dir),
            KIT_NETGUARD_LOG=str(net_log),
            KIT_NETGUARD_IMPORTS=str(imports_prefix),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HOME=str(cache_dir / "hf"),
            TORCH_HOME=str(cache_dir / "torch"),
            XDG_CACHE_HOME=str(cache_dir),
        )
        command = [python, "run.py", "--input_path", str(tasks)]
        for item in run_overrides:
            command += ["--set", item]
        report.command = command
        use_unshare = False
        if network in ("auto", "unshare"):
            use_unshare, why = unshare_works()
            if not use_unshare and network == "unshare":
                raise SubmissionError(f"--network unshare: unshare -rn does not work here ({why})")
            if not use_unshare:
                report.warnings.append(f"unshare -rn unavailable ({why}): only Python sockets are guarded")
        report.network = (
            "cut: separate network namespace (unshare -rn, loopback only) + socket guard (sitecustomize)"
            if use_unshare
            else "cut: socket guard (sitecustomize audit hook) only"
        )
        full = command
        if use_unshare:
            lo_up = 'ip link set lo up 2>/dev/null || true; exec "$@"'
            full = ["unshare", "-rn", "sh", "-c", lo_up, "sh", *command]
        log(f"[check] network {report.network}")
        log(f"[check] running in {root}: {shlex.join(command)}")
        start = time.perf_counter()
        try:
            with open(run_log, "wb") as out:
                rc = subprocess.run(
                    full, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
                )
            returncode = rc.returncode
        except subprocess.TimeoutExpired:
            returncode = None
            report.problems.append(f"run: run.py ran past {timeout:.0f} s and was stopped")
        report.wall_seconds = time.perf_counter() - start
        log(f"[check] run.py finished in {report.wall_seconds:.1f} s with exit status {returncode}")
        attempts = _network_attempts(net_log)
        if attempts:
            report.problems.append(
                f"network: the solution tried to reach the network {len(attempts)} time(s) (the contest runs "
                "without internet; the check refused it): " + "; ".join(attempts[:3])
            )
        if returncode not in (0, None):
            meaning = RUN_EXIT_MEANINGS.get(returncode, "crashed")
            report.problems.append(
                f"run: run.py exited with status {returncode} ({meaning}); its last lines:\n{_tail(run_log)}"
            )
        foreign = _foreign_imports(imports_prefix, root)
        if foreign:
            report.problems.append(
                "imports: the run used code from the development checkout, not from the ZIP: "
                + ", ".join(foreign[:5])
            )

        # 4. outputs: valid files, a well-typed answer for every task
        out_dir = root / OUTPUT_DIR
        files = [out_dir / CLASSIFICATION_FILE, out_dir / GENERATIVE_FILE]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            report.problems.append(f"outputs: {', '.join(missing)} not written to {OUTPUT_DIR}/")
            return report
        from solution import validate

        if validate.main(["predictions", *map(str, files)]) != 0:
            report.problems.append("outputs: the output files do not pass solution.validate (see above)")
        try:
            records = json.loads(tasks.read_text(encoding="utf-8"))
            qa, captions = (json.loads(p.read_text(encoding="utf-8")) for p in files)
        except ValueError as exc:
            report.problems.append(f"outputs: unreadable JSON ({exc})")
            return report
        answers = answer_problems(
            records if isinstance(records, list) else [], qa, captions, cfg.runtime.keying
        )
        if answers:
            report.problems.append(
                f"answers: {len(answers)} task(s) without a well-typed answer: " + "; ".join(answers[:5])
            )
        else:
            log(
                f"[check] answers: every task has a well-typed answer ({len(qa)} qa, {len(captions)} captioning)"
            )
        errors_file = out_dir / "errors.json"
        if errors_file.is_file():
            fallbacks = [e for e in json.loads(errors_file.read_text(encoding="utf-8")) if e.get("fallback")]
            if fallbacks:
                report.warnings.append(f"{len(fallbacks)} task(s) got a fallback answer (see errors.json)")

        # 5. score, speed
        if labels is not None:
            from solution import score

            args = ["--labels", str(labels), "--predictions", str(out_dir), "--keying", cfg.runtime.keying]
            args += ["--report", str(tmp / "score_report.json")] + ([] if coco else ["--no-coco"])
            if score.main(args) != 0:
                report.problems.append("score: solution.score could not score the outputs (see above)")
            elif (tmp / "score_report.json").is_file():
                report.score_report = json.loads((tmp / "score_report.json").read_text(encoding="utf-8"))
        summary_file = out_dir / SUMMARY_FILE
        if summary_file.is_file():
            _speed(
                report, json.loads(summary_file.read_text(encoding="utf-8")), n_tasks, TIME_LIMIT_SECONDS, log
            )
        else:
            report.problems.append(f"outputs: {SUMMARY_FILE} not written (no timings)")
    return report


def format_check(report: CheckReport) -> str:
    lines = [f"WARNING: {w}" for w in report.warnings]
    if report.passed:
        lines.append("CHECK PASSED")
    else:
        lines.append(f"CHECK FAILED: {len(report.problems)} problem(s)")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solution.submission",
        description="Build the contest submission ZIP, or check one in an offline dress rehearsal.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the submission ZIP")
    b.add_argument("--preset", default="contest", help="preset name (or a YAML file) run.py defaults to")
    b.add_argument(
        "--adapter", type=Path, help="trained checkpoint folder (config.yaml, adapter/, fusion...)"
    )
    b.add_argument(
        "--include-weights",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="extra weights folders (kept at their path under the kit root, else put under weights/)",
    )
    b.add_argument("--wheels", type=Path, metavar="DIR", help="folder of .whl files to ship in vendor/")
    b.add_argument(
        "--with-metadata",
        action="store_true",
        help="also pack metadata.json (submission in the custom image, which must then carry the /app weights)",
    )
    b.add_argument("--out", type=Path, required=True, help="the ZIP to write")
    b.add_argument("--kit-root", type=Path, default=KIT_ROOT, help="kit folder to pack (default: this one)")
    b.add_argument("--max-bytes", type=int, default=MAX_ZIP_BYTES, help="size limit (default 5 GB)")

    c = sub.add_parser("check", help="unpack a ZIP and run it offline as the contest would")
    c.add_argument("zip", type=Path)
    c.add_argument("--tasks", type=Path, required=True, help="a split folder (tasks.json) or a tasks JSON")
    c.add_argument("--labels", type=Path, help="labels JSON (default: labels.json beside the tasks file)")
    c.add_argument("--weights-root", type=Path, help="folder standing in for the contest image's /app")
    c.add_argument("--n-tasks", type=int, default=5000, help="test-set size for the time projection")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="extra config override passed to run.py (repeatable)")  # fmt: skip
    c.add_argument("--network", choices=["auto", "unshare", "guard"], default="auto",
                   help="auto: network namespace where possible, else the socket guard alone")  # fmt: skip
    c.add_argument("--python", default=sys.executable, help="interpreter that runs run.py")
    c.add_argument("--keep", type=Path, help="unpack here (an empty folder) and keep it, with the run's log")
    c.add_argument("--timeout", type=float, default=TIME_LIMIT_SECONDS, help="seconds (default 3.5 h)")
    c.add_argument("--coco", action="store_true", help="also compute the COCO metrics (Java)")
    c.add_argument("--strict-time", action="store_true", help="fail when the projection is over the limit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 built / check passed, 1 check failed, 2 unusable input or build refused."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "build":
            result = build_submission(
                args.out,
                args.preset,
                adapter=args.adapter,
                include_weights=args.include_weights,
                wheels=args.wheels,
                with_metadata=args.with_metadata,
                kit_root=args.kit_root,
                max_bytes=args.max_bytes,
            )
            print(format_build(result, args.max_bytes))
            return 0
        report = check_submission(
            args.zip,
            args.tasks,
            labels=args.labels,
            weights_root=args.weights_root,
            n_tasks=args.n_tasks,
            overrides=args.overrides,
            network=args.network,
            python=args.python,
            keep=args.keep,
            timeout=args.timeout,
            coco=args.coco,
        )
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.strict_time and report.projected_seconds and report.projected_seconds > TIME_LIMIT_SECONDS:
        report.problems.append("time: the projected time is over the 3.5 h limit (--strict-time)")
    print(format_check(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
