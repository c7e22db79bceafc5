"""The submission ZIP: what goes in (and what is refused), and the offline dress rehearsal that checks it.

Two rehearsals run run.py for real (tiny preset, the sample split): the clean ZIP passes with the network cut; a
ZIP whose run.py quietly tries to connect fails. The other failures are caught before anything runs.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from solution import KIT_ROOT, submission
from solution.submission import MANIFEST_FILE, SubmissionError, build_submission, refusal_reason

sys.path.insert(0, str(KIT_ROOT))
import run  # noqa: E402  (the contest entry point at the kit root)

PLANTED_CONNECT = (
    "import socket\n"
    "try:  # a solution that phones home and swallows the error\n"
    "    socket.create_connection(('198.51.100.7', 80), timeout=2).close()\n"
    "except OSError:\n"
    "    pass\n"
)


def kit_copy(dest: Path) -> Path:
    """run.py, run.sh and solution/ copied to `dest` (a kit root the tests may plant files in)."""
    dest.mkdir(parents=True)
    for name in ("run.py", "run.sh"):
        shutil.copy2(KIT_ROOT / name, dest / name)
    shutil.copytree(KIT_ROOT / "solution", dest / "solution", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def build(capsys, *args: str) -> tuple[int, str]:
    code = submission.main(["build", *args])
    return code, capsys.readouterr().out


def check(capsys, *args: str) -> tuple[int, str]:
    code = submission.main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zip") / "tiny.zip"
    build_submission(out, "tiny")
    return out


def test_tiny_zip_layout_manifest_and_size_report(tmp_path: Path, capsys):
    out = tmp_path / "submission.zip"
    code, printed = build(capsys, "--preset", "tiny", "--out", str(out))
    assert code == 0
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {"run.py", "run.sh", "default_config", "solution/__init__.py", MANIFEST_FILE} <= names
        assert "solution/presets/tiny.yaml" in names and "solution/netguard.py" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert not any(n.startswith(("weights/", "data/", ".venv/", "tests/")) for n in names)
        assert zf.read("default_config") == b"tiny\n"
        manifest = json.loads(zf.read(MANIFEST_FILE))
        listed = {e["path"]: e for e in manifest["files"]}
        assert set(listed) == names - {MANIFEST_FILE}
        for name, entry in listed.items():
            data = zf.read(name)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"]), name
    assert manifest["default_config"] == "tiny" and manifest["contest_paths"] == []
    assert "Size by top-level folder:" in printed and "solution/" in printed and "total" in printed
    assert "of the 5.0 GB limit" in printed and "run.py defaults to --config tiny" in printed
    again = tmp_path / "again.zip"
    build_submission(again, "tiny")
    assert again.read_bytes() == out.read_bytes()  # reproducible: sorted entries, fixed timestamps


def test_refused_files_are_refused(tmp_path: Path, capsys):
    kit = kit_copy(tmp_path / "kit")
    planted = {
        "solution/.env": "secret",
        "solution/id_rsa": "secret",
        "solution/server.pem": "secret",
        "solution/__pycache__/config.cpython-311.pyc": "cache",
        "solution/data/clip.mp4": "media",
        "solution/data/voice.mp3": "media",
        "solution/output_path_from_job/for_generative_metric.json": "outputs",
        "solution/.git/config": "version control",
    }
    for rel in planted:
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_text("x")
    extra = tmp_path / "extra-weights"
    for rel in (
        "tokenizer.json",
        "special_tokens_map.json",
        "hf_token",
        "aws_credentials.json",
        ".venv/pyvenv.cfg",
    ):
        (extra / rel).parent.mkdir(parents=True, exist_ok=True)
        (extra / rel).write_text("{}")
    out = tmp_path / "s.zip"
    code, printed = build(capsys, "--preset", "tiny", "--kit-root", str(kit), "--include-weights", str(extra),
                          "--out", str(out))  # fmt: skip
    assert code == 0
    names = set(zipfile.ZipFile(out).namelist())
    assert {"weights/extra-weights/tokenizer.json", "weights/extra-weights/special_tokens_map.json"} <= names
    for rel in planted:
        assert rel not in names
    assert not {"weights/extra-weights/hf_token", "weights/extra-weights/aws_credentials.json"} & names
    assert not any(".venv" in n or ".git/" in n for n in names)
    for line in ("refused solution/.env (secret)", "refused solution/id_rsa (secret)", "refused solution/data/clip.mp4 (media)",
                 "refused solution/__pycache__/ (cache)", "refused solution/output_path_from_job/ (outputs)",
                 "refused solution/.git/ (version control)", "refused weights/extra-weights/hf_token (secret)",
                 "refused weights/extra-weights/.venv/ (virtual environment)"):  # fmt: skip
        assert line in printed
    assert (
        refusal_reason("vendor/botocore/credentials.py") is None
    )  # source code named after credentials is fine
    assert refusal_reason("weights/x/tokenizer_config.json") is None
    assert refusal_reason("vendor/certifi/cacert.pem") is None  # public CA bundle, not a key


def test_size_limit_fails_the_build(tmp_path: Path, capsys):
    code = submission.main(
        ["build", "--preset", "tiny", "--out", str(tmp_path / "s.zip"), "--max-bytes", "50000"]
    )
    assert code == 2 and not (tmp_path / "s.zip").exists() and not list(tmp_path.iterdir())
    err = capsys.readouterr().err
    assert "error: the ZIP is" in err and "over the 50.0 kB limit" in err and "solution/" in err
    with pytest.raises(SubmissionError, match="unknown preset 'nope'; valid presets: contest, pocket, tiny"):
        build_submission(tmp_path / "s.zip", "nope")


def test_contest_preset_packs_whisper_and_leaves_app_paths_to_the_image(tmp_path: Path):
    if not (KIT_ROOT / "weights" / "whisper-tiny.en" / "model.safetensors").is_file():
        pytest.skip("weights/whisper-tiny.en not prepared (make weights)")
    result = build_submission(tmp_path / "contest.zip", "contest")
    names = set(zipfile.ZipFile(result.zip_path).namelist())
    assert (
        "weights/whisper-tiny.en/model.safetensors" in names
        and "weights/whisper-tiny.en/config.json" in names
    )
    assert not any(n.startswith("weights/smollm2") or n.startswith("app/") for n in names)
    assert result.contest_paths == ["/app/clip-vit-large-patch14-336", "/app/Qwen2-0.5B-Instruct"]
    assert zipfile.ZipFile(result.zip_path).read("default_config") == b"contest\n"


def test_checkpoint_and_wheels_are_packed_and_found_by_run_py(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "adapter").mkdir(parents=True)
    (ckpt / "adapter" / "adapter_config.json").write_text("{}")
    (ckpt / "fusion.safetensors").write_bytes(b"\0" * 16)
    config = yaml.safe_load((KIT_ROOT / "solution/presets/tiny.yaml").read_text())
    config["llm"]["adapter"], config["fusion"] = (
        "adapter",
        {**config["fusion"], "weights": "fusion.safetensors"},
    )
    (ckpt / "config.yaml").write_text(yaml.safe_dump(config))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "kitvendored-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("kitvendored/__init__.py", "VALUE = 42\n")
        whl.writestr("kitvendored-1.0.dist-info/METADATA", "Name: kitvendored\nVersion: 1.0\n")
        whl.writestr("kitvendored-1.0.data/purelib/kitvendored_extra.py", "")
        whl.writestr("kitvendored-1.0.data/scripts/kitvendored-cli", "#!/bin/sh\n")
    result = build_submission(tmp_path / "s.zip", "tiny", adapter=ckpt, wheels=wheels)
    assert result.default_config == "checkpoint"
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(result.zip_path).extractall(unpacked)
    assert (unpacked / "checkpoint/config.yaml").is_file() and (unpacked / "checkpoint/adapter").is_dir()
    assert (unpacked / "vendor/kitvendored/__init__.py").is_file() and (
        unpacked / "vendor/kitvendored_extra.py"
    ).is_file()
    assert not list(unpacked.rglob("kitvendored-cli"))
    probe = "import run, kitvendored; print(run.default_config()); print(kitvendored.VALUE)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=unpacked, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [str(unpacked / "checkpoint"), "42"]


def test_the_repository_defaults_to_pocket():
    assert not (KIT_ROOT / "default_config").exists(), "default_config belongs in submission ZIPs only"
    assert run.default_config() == "pocket"


def test_check_passes_with_the_network_cut(tiny_zip: Path, sample_tasks: Path, capsys):
    code, printed = check(capsys, str(tiny_zip), "--tasks", str(sample_tasks.parent))
    assert code == 0, printed
    assert "CHECK PASSED" in printed
    namespace, _ = submission.unshare_works()
    assert ("separate network namespace (unshare -rn" in printed) == namespace
    assert "socket guard" in printed and "network cut" in printed
    assert "manifest: every file present, sizes and sha256 match" in printed
    assert "run.py defaults to --config tiny" in printed
    assert "answers: every task has a well-typed answer (4 qa, 2 captioning)" in printed
    assert printed.count("OK ") >= 2  # solution.validate on both output files
    assert (
        "QA accuracy" in printed and "meteor_contest_nltk_gamma0" in printed
    )  # labels.json beside the tasks
    assert "Projected for 5000 tasks:" in printed and "3.5 h limit" in printed


def test_planted_network_attempt_fails_the_check(tmp_path: Path, sample_tasks: Path, capsys):
    kit = kit_copy(tmp_path / "kit")
    text = (kit / "run.py").read_text()
    (kit / "run.py").write_text(
        text.replace("\nimport argparse\n", "\n" + PLANTED_CONNECT + "import argparse\n", 1)
    )
    zip_path = build_submission(tmp_path / "s.zip", "tiny", kit_root=kit).zip_path
    split = tmp_path / "split"  # one task keeps this run short
    shutil.copytree(sample_tasks.parent, split, ignore=shutil.ignore_patterns("labels.json"))
    (split / "tasks.json").write_text(json.dumps(json.loads((split / "tasks.json").read_text())[:1]))
    code, printed = check(capsys, str(zip_path), "--tasks", str(split / "tasks.json"), "--network", "guard")
    assert code == 1 and "CHECK FAILED" in printed
    assert "network: the solution tried to reach the network 1 time(s)" in printed
    assert "connect ('198.51.100.7', 80) from " in printed and "/solution/run.py:" in printed


def test_netguard_refuses_the_internet_but_not_loopback(tmp_path: Path):
    """The guard the check installs as sitecustomize, in a plain subprocess (no namespace)."""
    guard = tmp_path / "guard"
    guard.mkdir()
    shutil.copyfile(KIT_ROOT / "solution" / "netguard.py", guard / "sitecustomize.py")
    probe = (
        "import socket\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=2).close()\n"
        "print('loopback ok')\n"
        "for target in (('198.51.100.7', 443), ('example.com', 80)):\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=2)\n"
        "    except ConnectionRefusedError as exc:\n"
        "        print('refused:', exc)\n"
    )
    log = tmp_path / "attempts.jsonl"
    env = {"PYTHONPATH": str(guard), "KIT_NETGUARD_LOG": str(log), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0] == "loopback ok" and len(lines) == 3, done.stdout + done.stderr
    assert lines[1] == (
        "refused: network access is cut: the contest runs without internet "
        "(connect ('198.51.100.7', 443) refused by the submission check)"
    )
    assert "getaddrinfo example.com" in lines[2]
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [a["call"] for a in attempts] == ["connect", "getaddrinfo"]
    assert attempts[0]["where"] == "<string>:7"  # the caller's line, not socket.py's


@pytest.mark.parametrize("damage", ["missing", "changed", "unlisted"])
def test_planted_manifest_damage_fails_the_check_before_running(
    tiny_zip: Path, tmp_path: Path, sample_tasks, capsys, damage
):
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(tiny_zip) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "solution/heads.py":
                if damage == "missing":
                    continue
                if damage == "changed":
                    data = data[:-1] + b"#"  # same size, other bytes
            dst.writestr(info, data)
        if damage == "unlisted":
            dst.writestr("solution/extra.py", "")
    code, printed = check(capsys, str(damaged), "--tasks", str(sample_tasks.parent))
    assert code == 1 and "not running it" in printed
    expected = {
        "missing": f"solution/heads.py is listed in {MANIFEST_FILE} but missing from the ZIP",
        "changed": "solution/heads.py does not match its sha256 in the manifest",
        "unlisted": "solution/extra.py is in the ZIP but not in the manifest",
    }[damage]
    assert expected in printed


def test_app_paths_map_to_the_weights_root(tmp_path: Path):
    root = kit_copy(tmp_path / "kit")
    (root / "default_config").write_text("contest\n")
    (root / "weights" / "whisper-tiny.en").mkdir(parents=True)
    cfg, default = submission._zip_config(root, [])
    assert default == "contest"
    report = submission.CheckReport()
    assert submission._map_contest_paths(cfg, root, None, report) == []
    assert "--weights-root" in report.problems[0] and "/app/clip-vit-large-patch14-336" in report.problems[0]
    app = tmp_path / "app"
    for name in ("clip-vit-large-patch14-336", "Qwen2-0.5B-Instruct"):
        (app / name).mkdir(parents=True)
    report = submission.CheckReport()
    overrides = submission._map_contest_paths(cfg, root, app, report)
    assert report.problems == []
    assert overrides == [f"vision.path={app.resolve()}/clip-vit-large-patch14-336",
                         f"llm.path={app.resolve()}/Qwen2-0.5B-Instruct"]  # fmt: skip


def test_training_state_is_refused():
    from solution.submission import refusal_reason

    assert refusal_reason("checkpoint/trainer_state.pt") == "training state"
    assert refusal_reason("checkpoint/rng_state_0.pt") == "training state"
    assert refusal_reason("checkpoint/fusion.safetensors") is None
