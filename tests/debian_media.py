"""Real media for tests, from Debian packages fetched at test time (`apt-get download` + `dpkg-deb -x`: nothing
is installed) and cached under <kit>/.cache/debian/. Skips the calling test with the reason when unavailable."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from solution import KIT_ROOT

CACHE = KIT_ROOT / ".cache" / "debian"


def debian_file(package: str, path_in_package: str) -> Path:
    """The extracted file `path_in_package` of Debian package `package` (fetched once, then cached)."""
    folder = CACHE / package
    target = folder / path_in_package
    if target.exists():
        return target
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip(f"{package} unavailable: apt-get/dpkg-deb not found (not a Debian system)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            subprocess.run(
                ["apt-get", "download", package], cwd=tmp, check=True, capture_output=True, timeout=300
            )
            deb = next(Path(tmp).glob(f"{package}_*.deb"))
            subprocess.run(
                ["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True, capture_output=True, timeout=120
            )
        except (subprocess.SubprocessError, OSError, StopIteration) as err:
            detail = (getattr(err, "stderr", b"") or b"").decode(errors="replace")[-300:]
            pytest.skip(f"could not fetch the Debian package {package} ({err} {detail})")
        shutil.rmtree(folder, ignore_errors=True)
        Path(f"{tmp}/x").rename(folder)
    if not target.exists():
        pytest.skip(f"{package} no longer ships {path_in_package}")
    return target
