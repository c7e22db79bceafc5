"""Frozen encoder outputs cached on disk, so that training epochs after the first skip decoding and encoders.

One entry per clip under the cache folder (default `.cache/features/`):

    <key[:2]>/<key>.safetensors   video_tokens (N, Dv), video_times (N,), audio_tokens (M, Da), audio_times (M,)
    <key[:2]>/<key>.json          tags, transcript, which modalities are present, and what made the key

The key is a SHA-256 of the media files' content (the task's video and audio file), the encoder-relevant config
sections (`media`, `vision`, `audio`; plus `runtime.seed` when a tower is random-init, since the seed is its
weights), the file listing (name, size, mtime) of the encoder weights folders and the device kind. The JSON is
written last, by rename: an entry without it is incomplete and is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import KIT_ROOT
from .config import KitConfig, resolve_path
from .model import Encoded, TriModalModel
from .runner import Runner
from .tasks import Task

DEFAULT_CACHE_DIR = KIT_ROOT / ".cache" / "features"
FORMAT_VERSION = 1
ENCODER_SECTIONS = ("media", "vision", "audio")


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256, for this process


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content (memoised per process by path, size and mtime)."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _DIGESTS:
        with open(path, "rb") as handle:
            _DIGESTS[memo_key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _DIGESTS[memo_key]


def _folder_listing(path: str) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime_ns) of every file under a weights folder; [] when there is none."""
    if not path:
        return []
    root = resolve_path(path)
    if not root.is_dir():
        return []
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )


def encoder_fingerprint(cfg: KitConfig, device: str) -> dict[str, Any]:
    """Everything besides the media that determines the encoders' output for a clip."""
    data = cfg.to_dict()
    fingerprint: dict[str, Any] = {name: data[name] for name in ENCODER_SECTIONS}
    if cfg.vision.tower == "tiny" or cfg.audio.encoder == "tiny":
        fingerprint["seed"] = cfg.runtime.seed  # random-init towers: the seed is their weights
    fingerprint["weights"] = {
        "vision": _folder_listing(cfg.vision.path),
        "audio": _folder_listing(cfg.audio.path),
    }
    fingerprint["device"] = device
    fingerprint["format"] = FORMAT_VERSION
    return fingerprint


def feature_key(task: Task, fingerprint: dict[str, Any]) -> str:
    """The cache key of a task's encoder outputs: its media content and the encoder fingerprint."""
    media = {
        "video": file_digest(task.video) if task.video is not None and task.video.is_file() else None,
        "audio": file_digest(task.audio) if task.audio is not None and task.audio.is_file() else None,
    }
    text = json.dumps({"media": media, "encoders": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_entry(directory: Path, key: str, encoded: Encoded, about: dict[str, Any]) -> None:
    """Write one entry (tensors, then the JSON that marks it complete), each file atomically."""
    folder = directory / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name in ("video", "audio"):
        pair = getattr(encoded, name)
        if pair is not None:
            tensors[f"{name}_tokens"] = pair[0].float().contiguous()
            tensors[f"{name}_times"] = pair[1].float().contiguous()
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / f"{key}.safetensors")
    record = {
        "format": FORMAT_VERSION,
        "video": encoded.video is not None,
        "audio": encoded.audio is not None,
        "tags": list(encoded.tags),
        "transcript": encoded.transcript,
        **about,
    }
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, folder / f"{key}.json")


def load_entry(directory: Path, key: str) -> Encoded | None:
    """The cached Encoded of `key`, or None when there is no complete, readable entry."""
    folder = directory / key[:2]
    try:
        record = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / f"{key}.safetensors"))
    except (OSError, ValueError):  # missing, partial or corrupt: compute it again
        return None
    if record.get("format") != FORMAT_VERSION:
        return None
    encoded = Encoded(tags=list(record["tags"]), transcript=record["transcript"])
    for name in ("video", "audio"):
        if record[name]:
            setattr(encoded, name, (tensors[f"{name}_tokens"], tensors[f"{name}_times"]))
    return encoded


class FeatureCache:
    """Encoder outputs per task: from memory, else from disk, else decoded and encoded once (then stored).

    The encoders run in eval mode, as at inference; the media are decoded by `Runner.load_media` (the same
    decoding as run.py). `directory=None` keeps entries in memory only.
    """

    def __init__(self, model: TriModalModel, cfg: KitConfig, directory: Path | None = DEFAULT_CACHE_DIR):
        self.model = model
        self.cfg = cfg
        self.directory = None if directory is None else Path(directory)
        self.fingerprint = encoder_fingerprint(cfg, model.device.type)
        self._media = Runner(model, cfg)
        self._memory: dict[str, Encoded] = {}
        self.encoder_runs = 0  # clips decoded and encoded by this cache
        self.disk_hits = 0
        self.memory_hits = 0

    def get(self, task: Task) -> Encoded:
        """The task's Encoded (tensors usable in autograd: never created in inference mode)."""
        with torch.inference_mode(False):
            return self._get(task)

    def _get(self, task: Task) -> Encoded:
        key = feature_key(task, self.fingerprint)
        if key in self._memory:
            self.memory_hits += 1
            return self._memory[key]
        encoded = None if self.directory is None else load_entry(self.directory, key)
        if encoded is not None:
            self.disk_hits += 1
        else:
            encoded = self._compute(task)
            if self.directory is not None:
                about = {"video_file": task.video, "audio_file": task.audio, "encoders": self.fingerprint}
                save_entry(self.directory, key, encoded, about)
        self._memory[key] = encoded
        return encoded

    def _compute(self, task: Task) -> Encoded:
        self.encoder_runs += 1
        encoders = [m for m in (self.model.vision, self.model.audio) if m is not None]
        modes = [m.training for m in encoders]
        for module in encoders:
            module.eval()
        try:
            with torch.no_grad():
                frames, wave, _ = self._media.load_media(task)
                encoded = self.model.encode(frames, wave)
        finally:
            for module, mode in zip(encoders, modes, strict=True):
                module.train(mode)
        # float32 copies, exactly what a later disk hit returns
        return dataclasses.replace(
            encoded,
            video=None if encoded.video is None else tuple(t.float().contiguous() for t in encoded.video),
            audio=None if encoded.audio is None else tuple(t.float().contiguous() for t in encoded.audio),
        )

    def stats(self) -> dict[str, int]:
        return {
            "encoder_runs": self.encoder_runs,
            "disk_hits": self.disk_hits,
            "memory_hits": self.memory_hits,
        }
