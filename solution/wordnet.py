"""WordNet for NLTK's METEOR without internet: the Debian route of ../shared/STACK.md.

    python -m solution.wordnet [--data-dir DIR] [--offline]

NLTK's `meteor_score` matches words in three stages: exact, Porter stem, WordNet synonym. Without WordNet data
the third stage cannot run. With a network `nltk.download("wordnet")` provides it; here there is none, so the
WordNet 3.0 database is taken from Debian's packages `wordnet-base` and `wordnet-sense-index`:

1. `apt-get download` both .deb files into a cache folder (no root needed; root may `apt-get update` first),
2. `dpkg-deb -x` them into a temporary folder (nothing is installed),
3. copy (not symlink: NLTK refuses links that leave its data root) the database files from
   `usr/share/wordnet/` into `<data_dir>/corpora/wordnet/`,
4. write `lexnames`, which Debian does not ship: the 45 rows of the lexnames(5WN) man page.

Every step is skipped when its result is already there, so calling this again is cheap.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from solution import KIT_ROOT

DEFAULT_DATA_DIR = KIT_ROOT / ".cache" / "nltk_data"
"""Where the kit keeps its NLTK data; the scorer adds it to `nltk.data.path`."""
DEFAULT_DEB_CACHE = KIT_ROOT / ".cache" / "debian" / "wordnet"
"""Where the downloaded .deb files are kept (re-used by later calls)."""
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
DEBIAN_WORDNET_DIR = Path("usr/share/wordnet")  # inside the packages
SYSTEM_WORDNET_DIR = Path("/usr/share/wordnet")  # where a system that installed them has the files
DEBIAN_COPYRIGHT = Path("usr/share/doc/wordnet-base/copyright")  # WordNet 3.0's licence, kept as LICENSE
STAMP = "README.kit"  # written into corpora/wordnet/ once NLTK has loaded the copy

NLTK_FILES = (
    "cntlist.rev",
    "lexnames",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)
"""The files NLTK's WordNetCorpusReader opens (its `_FILES`); all but `lexnames` come from the packages."""

LEXNAMES: tuple[tuple[str, int], ...] = (
    ("adj.all", 3),
    ("adj.pert", 3),
    ("adv.all", 4),
    ("noun.Tops", 1),
    ("noun.act", 1),
    ("noun.animal", 1),
    ("noun.artifact", 1),
    ("noun.attribute", 1),
    ("noun.body", 1),
    ("noun.cognition", 1),
    ("noun.communication", 1),
    ("noun.event", 1),
    ("noun.feeling", 1),
    ("noun.food", 1),
    ("noun.group", 1),
    ("noun.location", 1),
    ("noun.motive", 1),
    ("noun.object", 1),
    ("noun.person", 1),
    ("noun.phenomenon", 1),
    ("noun.plant", 1),
    ("noun.possession", 1),
    ("noun.process", 1),
    ("noun.quantity", 1),
    ("noun.relation", 1),
    ("noun.shape", 1),
    ("noun.state", 1),
    ("noun.substance", 1),
    ("noun.time", 1),
    ("verb.body", 2),
    ("verb.change", 2),
    ("verb.cognition", 2),
    ("verb.communication", 2),
    ("verb.competition", 2),
    ("verb.consumption", 2),
    ("verb.contact", 2),
    ("verb.creation", 2),
    ("verb.emotion", 2),
    ("verb.motion", 2),
    ("verb.perception", 2),
    ("verb.possession", 2),
    ("verb.social", 2),
    ("verb.stative", 2),
    ("verb.weather", 2),
    ("adj.ppl", 3),
)
"""WordNet 3.0's lexicographer files in file-number order (00..44) with their syntactic category
(1 noun, 2 verb, 3 adjective, 4 adverb), as listed in the lexnames(5WN) man page of `wordnet-base`."""

DOWNLOADER_HOST = ("raw.githubusercontent.com", 443)  # where nltk.download fetches its packages
DOWNLOADER_TIMEOUT_S = 3.0

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def lexnames_text() -> str:
    """The `lexnames` file: `NN<TAB>name<TAB>category` per line."""
    return "".join(f"{number:02d}\t{name}\t{category}\n" for number, (name, category) in enumerate(LEXNAMES))


def wordnet_dir(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> Path:
    """The folder NLTK reads WordNet from under `data_dir`."""
    return Path(data_dir) / "corpora" / "wordnet"


def missing_files(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> list[str]:
    """The NLTK WordNet files not (or not as regular, non-empty files) in `data_dir`."""
    folder = wordnet_dir(data_dir)
    return [
        name
        for name in NLTK_FILES
        if not (folder / name).is_file()
        or (folder / name).is_symlink()
        or (folder / name).stat().st_size == 0
    ]


def add_to_nltk_path(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> None:
    """Put `data_dir` first in `nltk.data.path` (once)."""
    import nltk

    path = str(Path(data_dir).absolute())
    if path in nltk.data.path:
        nltk.data.path.remove(path)
    nltk.data.path.insert(0, path)


def load_wordnet(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> tuple[Any | None, str]:
    """NLTK's WordNet reader and where it was found, or (None, why not).

    Adds `data_dir` to `nltk.data.path` first, so the kit's copy wins; a WordNet that NLTK finds elsewhere
    (e.g. from `nltk.download`) is used when the kit's copy is absent.
    """
    add_to_nltk_path(data_dir)
    from nltk.corpus import wordnet

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available" (no omw: not needed)
            if not wordnet.synsets("dog"):
                return None, "WordNet loaded but has no synsets for 'dog': the database files are broken"
            root = str(getattr(wordnet, "root", "?"))
    except LookupError:
        return None, (
            f"NLTK finds no WordNet (searched {wordnet_dir(data_dir)} and nltk.data.path); "
            "run `python -m solution.wordnet` to install it offline"
        )
    except (OSError, ValueError, IndexError, KeyError) as exc:
        return None, f"WordNet files could not be read: {exc}"
    return wordnet, root


def verify(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> str | None:
    """None when the WordNet copy in `data_dir` loads and knows 'happy'; else what is wrong.

    Loads a fresh reader from `data_dir` itself (not whatever `nltk.corpus.wordnet` finds first).
    """
    missing = missing_files(data_dir)
    if missing:
        return f"{wordnet_dir(data_dir)}: missing {', '.join(missing)}"
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = WordNetCorpusReader(str(wordnet_dir(data_dir)), None)
            lemmas = {lemma.name() for synset in reader.synsets("happy") for lemma in synset.lemmas()}
    except (OSError, ValueError, IndexError, KeyError, LookupError) as exc:
        return f"{wordnet_dir(data_dir)}: NLTK cannot read it ({type(exc).__name__}: {exc})"
    if "glad" not in lemmas:
        return f"{wordnet_dir(data_dir)}: loads, but 'happy' has no synonym 'glad' (found {sorted(lemmas)})"
    return None


# ---------------------------------------------------------------- route 1: NLTK's downloader (needs a network)


def network_reachable(host: tuple[str, int] = DOWNLOADER_HOST, timeout: float = DOWNLOADER_TIMEOUT_S) -> bool:
    """Whether a TCP connection to NLTK's download host opens within `timeout` seconds."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def try_downloader(data_dir: Path, log: Log, timeout: float = DOWNLOADER_TIMEOUT_S) -> bool:
    """`nltk.download("wordnet")` into `data_dir`, only when the download host answers quickly."""
    if not network_reachable(timeout=timeout):
        log(f"wordnet: {DOWNLOADER_HOST[0]} is not reachable: skipping NLTK's downloader")
        return False
    import nltk

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(max(timeout, 10.0))
    try:
        ok = bool(nltk.download("wordnet", download_dir=str(data_dir), quiet=True, raise_on_error=False))
    except Exception as exc:  # the downloader raises many kinds on a broken network
        log(f"wordnet: NLTK's downloader failed: {exc}")
        ok = False
    finally:
        socket.setdefaulttimeout(previous)
    return ok


# ---------------------------------------------------------------- route 2: Debian's packages


def _run(
    cmd: Sequence[str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _cached_debs(deb_cache: Path) -> dict[str, Path]:
    """The newest cached .deb of each package (apt-get names them `NAME_VERSION_ARCH.deb`)."""
    found: dict[str, Path] = {}
    for package in DEBIAN_PACKAGES:
        debs = sorted(deb_cache.glob(f"{package}_*.deb"))
        if debs:
            found[package] = debs[-1]
    return found


def download_debs(deb_cache: Path, log: Log) -> dict[str, Path]:
    """The packages' .deb files in `deb_cache`, downloaded with `apt-get download` when not cached.

    Raises RuntimeError saying what failed. When apt's package lists are missing and we are root, runs
    `apt-get update` once and tries again.
    """
    deb_cache.mkdir(parents=True, exist_ok=True)
    found = _cached_debs(deb_cache)
    missing = [package for package in DEBIAN_PACKAGES if package not in found]
    if not missing:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is not available (not a Debian-based system)")
    log(f"wordnet: apt-get download {' '.join(missing)} (into {deb_cache})")
    result = _run(["apt-get", "download", *missing], cwd=deb_cache)
    if result.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        log("wordnet: apt-get download failed; running apt-get update once and retrying")
        _run(["apt-get", "update", "-qq"], timeout=600)
        result = _run(["apt-get", "download", *missing], cwd=deb_cache)
    found = _cached_debs(deb_cache)
    still = [package for package in DEBIAN_PACKAGES if package not in found]
    if still:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(
            f"apt-get download {' '.join(still)} failed (exit {result.returncode}): "
            + (detail[-1] if detail else "no output")
            + " (root can run `apt-get update` first)"
        )
    return found


def extract_debs(debs: Sequence[Path], dest: Path) -> None:
    """`dpkg-deb -x` each package into `dest` (installs nothing)."""
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is not available (not a Debian-based system)")
    for deb in debs:
        result = _run(["dpkg-deb", "-x", str(deb), str(dest)])
        if result.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")


def install_from_folder(source: Path, data_dir: Path, licence: Path | None = None) -> list[str]:
    """Copy the WordNet database files from `source` (a `usr/share/wordnet`) into `data_dir`; write lexnames.

    Each file is written to a temporary name and renamed, so an interrupted copy never looks complete.
    Returns the names copied.
    """
    target = wordnet_dir(data_dir)
    target.mkdir(parents=True, exist_ok=True)
    wanted = [name for name in NLTK_FILES if name != "lexnames"]
    absent = [name for name in wanted if not (source / name).is_file()]
    if absent:
        raise RuntimeError(f"{source}: the packages lack {', '.join(absent)}")
    copied = []
    for name in sorted(path.name for path in source.iterdir() if path.is_file()):
        tmp = target / f".{name}.tmp"
        (target / name).unlink(missing_ok=True)  # never write through a symlink left by hand
        shutil.copyfile(source / name, tmp)
        os.replace(tmp, target / name)
        copied.append(name)
    _write_text(target / "lexnames", lexnames_text())
    if licence is not None and licence.is_file():
        shutil.copyfile(licence, target / "LICENSE")
    return copied


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def install_from_debian(data_dir: Path, deb_cache: Path, log: Log) -> None:
    """The Debian route: an installed system copy if there is one, else the downloaded packages."""
    system = SYSTEM_WORDNET_DIR
    if all((system / name).is_file() for name in NLTK_FILES if name != "lexnames"):
        log(f"wordnet: copying the system's WordNet from {system}")
        install_from_folder(system, data_dir, Path("/") / DEBIAN_COPYRIGHT)
        return
    debs = download_debs(deb_cache, log)
    with tempfile.TemporaryDirectory(prefix="wordnet-deb-") as tmp:
        log(f"wordnet: extracting {', '.join(path.name for path in debs.values())}")
        extract_debs(list(debs.values()), Path(tmp))
        copied = install_from_folder(Path(tmp) / DEBIAN_WORDNET_DIR, data_dir, Path(tmp) / DEBIAN_COPYRIGHT)
    log(f"wordnet: copied {len(copied)} files into {wordnet_dir(data_dir)} and wrote lexnames")


# ---------------------------------------------------------------- the entry point


def is_installed(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> bool:
    """Quick check (no loading): every file is there, lexnames is the expected one, and a past `verify` passed."""
    folder = wordnet_dir(data_dir)
    try:
        return (
            not missing_files(data_dir)
            and (folder / STAMP).is_file()
            and (folder / "lexnames").read_text(encoding="utf-8") == lexnames_text()
        )
    except OSError:
        return False


def _stamp(data_dir: Path) -> None:
    _write_text(
        wordnet_dir(data_dir) / STAMP,
        "WordNet 3.0 database files from Debian's wordnet-base and wordnet-sense-index packages, copied by\n"
        "`python -m solution.wordnet`; `lexnames` written from the lexnames(5WN) man page; licence in LICENSE.\n"
        "This file is written once NLTK has loaded the copy (it marks the copy as checked).\n",
    )


def ensure_wordnet(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    deb_cache: str | os.PathLike[str] = DEFAULT_DEB_CACHE,
    use_downloader: bool = True,
    log: Log = _stderr,
) -> bool:
    """Make NLTK's WordNet available without internet; True when NLTK can load it afterwards.

    `data_dir` is added to `nltk.data.path`. Nothing more is done when `data_dir` holds a checked copy.
    Otherwise NLTK's downloader is tried first (when `use_downloader` and its host answers within a few
    seconds), then the Debian route into `<data_dir>/corpora/wordnet/`. Never raises for a failed route: it
    logs why and returns False.
    """
    data_dir = Path(data_dir)
    add_to_nltk_path(data_dir)
    if is_installed(data_dir):
        return True
    if not missing_files(data_dir) and verify(data_dir) is None:  # complete but never checked by us
        _stamp(data_dir)
        return True
    if use_downloader and try_downloader(data_dir, log) and load_wordnet(data_dir)[0] is not None:
        log(f"wordnet: installed by NLTK's downloader into {data_dir}")
        return True
    try:
        install_from_debian(data_dir, Path(deb_cache), log)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"wordnet: the Debian route failed: {exc}")
        return False
    problem = verify(data_dir)
    if problem is not None:
        log(f"wordnet: installed but not usable: {problem}")
        return False
    _stamp(data_dir)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solution.wordnet",
        description="Make NLTK's WordNet available offline (for METEOR's synonym stage) from Debian's packages.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"NLTK data folder (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--deb-cache",
        type=Path,
        default=DEFAULT_DEB_CACHE,
        help=f"where .deb files are kept ({DEFAULT_DEB_CACHE})",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not try NLTK's downloader first (it is tried only when its host answers within 3 s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Install WordNet if needed; 0 when it is usable, 1 when not (the reason is printed)."""
    args = build_parser().parse_args(argv)
    offline = args.offline or os.environ.get("KIT_OFFLINE", "") not in ("", "0")
    if ensure_wordnet(args.data_dir, deb_cache=args.deb_cache, use_downloader=not offline):
        print(f"OK WordNet for NLTK in {wordnet_dir(args.data_dir)}")
        return 0
    print(
        f"error: WordNet is not available in {wordnet_dir(args.data_dir)}: METEOR will match exact words and "
        "stems only (see the messages above)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
