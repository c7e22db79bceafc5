"""WordNet offline for NLTK's METEOR: the lexnames facts, the Debian route into a fresh folder, idempotence,
and failing routes that report instead of raising."""

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from solution import wordnet as kit_wordnet


@pytest.fixture(scope="module")
def debs() -> dict[str, Path]:
    """The two .deb files (kept in the kit's cache folder, downloaded once), or skip with the reason."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not available (not a Debian-based system)")
    try:
        return kit_wordnet.download_debs(kit_wordnet.DEFAULT_DEB_CACHE, log=lambda message: None)
    except RuntimeError as exc:
        pytest.skip(f"Debian's wordnet packages cannot be downloaded here: {exc}")


def test_lexnames_are_the_45_rows_of_the_man_page(debs, tmp_path: Path):
    subprocess.run(["dpkg-deb", "-x", str(debs["wordnet-base"]), str(tmp_path)], check=True)
    page = gzip.decompress((tmp_path / "usr/share/man/man5/lexnames.5WN.gz").read_bytes()).decode()
    rows = re.findall(r"^(\d\d)\t(\S+)\s*\t", page, flags=re.MULTILINE)
    category = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    expected = "".join(f"{number}\t{name}\t{category[name.split('.')[0]]}\n" for number, name in rows)
    assert len(rows) == 45 and kit_wordnet.lexnames_text() == expected
    assert kit_wordnet.lexnames_text().splitlines()[5] == "05\tnoun.animal\t1"  # STACK.md's example


def test_debian_route_into_a_fresh_folder_then_idempotent(debs, tmp_path: Path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))  # this test's data dir goes first, then away
    monkeypatch.setattr(kit_wordnet, "SYSTEM_WORDNET_DIR", tmp_path / "no-system-copy")
    data_dir = tmp_path / "nltk_data"
    messages: list[str] = []
    assert kit_wordnet.ensure_wordnet(
        data_dir, deb_cache=kit_wordnet.DEFAULT_DEB_CACHE, use_downloader=False, log=messages.append
    )
    folder = data_dir / "corpora" / "wordnet"
    assert kit_wordnet.missing_files(data_dir) == []
    assert not any(
        path.is_symlink() for path in folder.iterdir()
    )  # copied: NLTK refuses links out of its root
    assert (folder / "lexnames").read_text() == kit_wordnet.lexnames_text()
    assert "WordNet" in (folder / "LICENSE").read_text()  # the package's copyright file
    assert kit_wordnet.verify(data_dir) is None  # a fresh NLTK reader: 'happy' has the synonym 'glad'
    assert any("copied" in message for message in messages)

    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    again: list[str] = []
    assert kit_wordnet.ensure_wordnet(data_dir, use_downloader=False, log=again.append)
    assert again == [] and {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    assert nltk.data.path[0] == str(data_dir.absolute())


def test_a_failing_route_is_reported_not_raised(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(kit_wordnet, "SYSTEM_WORDNET_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(kit_wordnet.shutil, "which", lambda name: None)  # no apt-get, no dpkg-deb
    messages: list[str] = []
    empty_cache = tmp_path / "debs"
    assert not kit_wordnet.ensure_wordnet(
        tmp_path / "data", deb_cache=empty_cache, use_downloader=False, log=messages.append
    )
    assert messages == [
        "wordnet: the Debian route failed: apt-get is not available (not a Debian-based system)"
    ]


def test_downloader_is_skipped_when_its_host_does_not_answer(tmp_path: Path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("nltk.download must not be called without a network")

    monkeypatch.setattr(kit_wordnet.socket, "create_connection", refuse)
    monkeypatch.setattr("nltk.download", no_download)
    messages: list[str] = []
    assert not kit_wordnet.try_downloader(tmp_path, messages.append)
    assert "not reachable" in messages[0]


def test_cli_reports_success(debs, capsys):
    assert kit_wordnet.main(["--offline"]) == 0
    assert capsys.readouterr().out.startswith("OK WordNet for NLTK in ")


def test_cli_fails_with_a_reason(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(kit_wordnet, "SYSTEM_WORDNET_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(kit_wordnet.shutil, "which", lambda name: None)
    monkeypatch.setitem(os.environ, "KIT_OFFLINE", "1")
    assert kit_wordnet.main(["--data-dir", str(tmp_path / "d"), "--deb-cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "apt-get is not available" in err and "exact words and stems only" in err
