"""Frozen encoder outputs cached on disk, so that training epochs after the first skip decoding and encoders.

One entry per clip and modality under the cache folder (default `.cache/features/`):

    <key[:2]>/<key>.safetensors   tokens (N, D), times (N,); audio also sound_events (K, 2) (audio.max_events)
    <key[:2]>/<key>.json          tags (video) or transcript (audio), and what made the key

A video entry's key is a SHA-256 of the video file's content and the config that shapes the vision tower's
output (sections `media` and `vision`, the listing (name, size, mtime) of its weights folder, the device kind, and
`runtime.seed` when the tower is random-init, since the seed is its weights); an audio entry's key the same over
the sound's source (the audio file, or the video file whose sound track is used) and the `audio` section. So
configs that differ only in the other modality or in the fusion and LLM share entries: the variants of
bench/learning.py encode each clip once. The JSON is written last, by rename: an entry without it is incomplete
and is computed again.
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
FORMAT_VERSION = 3
MODALITIES = ("video", "audio")


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


def encoder_fingerprint(cfg: KitConfig, device: str, modality: str) -> dict[str, Any]:
    """Everything besides the media that determines one modality's encoder output for a clip."""
    section = {"video": "vision", "audio": "audio"}[modality]
    data = cfg.to_dict()
    tower = getattr(cfg, section)
    fingerprint: dict[str, Any] = {"media": data["media"], section: data[section]}
    if getattr(tower, "tower", None) == "tiny" or getattr(tower, "encoder", None) == "tiny":
        fingerprint["seed"] = cfg.runtime.seed  # random-init towers: the seed is their weights
    fingerprint["weights"] = _folder_listing(tower.path)
    fingerprint["device"] = device
    fingerprint["format"] = FORMAT_VERSION
    return fingerprint


def _digest(path: Path | None) -> str | None:
    return file_digest(path) if path is not None and path.is_file() else None


def feature_key(task: Task, modality: str, fingerprint: dict[str, Any]) -> str | None:
    """The cache key of one modality of a task: its source file's content and the encoder fingerprint.

    None when the task has no source file for it (nothing to cache: the modality is absent).
    """
    if modality == "video":
        source = {"video": _digest(task.video)}
    else:  # the audio file, else the video's sound track (runner.task_audio's order)
        audio = _digest(task.audio)
        source = {"audio": audio} if audio is not None else {"video_track": _digest(task.video)}
    if not any(source.values()):
        return None
    text = json.dumps({"source": source, "encoder": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_entry(directory: Path, key: str, modality: str, encoded: Encoded, about: dict[str, Any]) -> None:
    """Write one modality's entry (tensors, then the JSON that marks it complete), each file atomically."""
    folder = directory / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    pair = getattr(encoded, modality)
    tensors = (
        {}
        if pair is None
        else {"tokens": pair[0].float().contiguous(), "times": pair[1].float().contiguous()}
    )
    if modality == "audio" and pair is not None:
        tensors["sound_events"] = torch.tensor(encoded.sound_events, dtype=torch.float32).reshape(-1, 2)
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / f"{key}.safetensors")
    text = {"tags": list(encoded.tags)} if modality == "video" else {"transcript": encoded.transcript}
    record = {"format": FORMAT_VERSION, "modality": modality, "present": pair is not None, **text, **about}
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, folder / f"{key}.json")


def load_entry(directory: Path, key: str, modality: str) -> Encoded | None:
    """An Encoded holding only the cached `modality` of `key`; None when there is no complete, readable entry."""
    folder = directory / key[:2]
    try:
        record = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / f"{key}.safetensors"))
    except (OSError, ValueError):  # missing, partial or corrupt: compute it again
        return None
    if record.get("format") != FORMAT_VERSION or record.get("modality") != modality:
        return None
    encoded = Encoded(tags=list(record.get("tags", [])), transcript=record.get("transcript", ""))
    if record["present"]:
        setattr(encoded, modality, (tensors["tokens"], tensors["times"]))
        if modality == "audio":
            encoded.sound_events = [(start, end) for start, end in tensors["sound_events"].tolist()]
    return encoded


def merge(video: Encoded, audio: Encoded) -> Encoded:
    """The video part (tokens, tags) of one Encoded with the audio part (tokens, transcript, sound events) of
    another."""
    return Encoded(video=video.video, tags=video.tags, audio=audio.audio, transcript=audio.transcript,
                   sound_events=audio.sound_events)  # fmt: skip


class FeatureCache:
    """Encoder outputs per task: from memory, else from disk, else decoded and encoded once (then stored).

    Video and audio are cached separately (see the module docstring). The encoders run in eval mode, as at
    inference; the media are decoded by `Runner.decode` (the same decoding as run.py). `directory=None` keeps
    entries in memory only. The counters are per task: `encoder_runs` tasks needed an encoder, `disk_hits` were
    served whole from disk, `memory_hits` from memory.
    """

    def __init__(self, model: TriModalModel, cfg: KitConfig, directory: Path | None = DEFAULT_CACHE_DIR):
        self.model = model
        self.cfg = cfg
        self.directory = None if directory is None else Path(directory)
        device = model.device.type
        self.fingerprints = {m: encoder_fingerprint(cfg, device, m) for m in MODALITIES}
        self.encoders = {"video": model.vision, "audio": model.audio}
        self._media = Runner(model, cfg)
        self._memory: dict[str, Encoded] = {}
        self.encoder_runs = 0
        self.disk_hits = 0
        self.memory_hits = 0

    def get(self, task: Task) -> Encoded:
        """The task's Encoded (tensors usable in autograd: never created in inference mode)."""
        with torch.inference_mode(False):
            return self._get(task)

    def _get(self, task: Task) -> Encoded:
        keys = {m: self._key(task, m) for m in MODALITIES}
        parts: dict[str, Encoded | None] = {}
        for m, key in keys.items():
            if key is None:
                parts[m] = Encoded()  # no source file, or no encoder for it
            elif key in self._memory:
                parts[m] = self._memory[key]
            else:
                parts[m] = None if self.directory is None else load_entry(self.directory, key, m)
        if all(key is None or key in self._memory for key in keys.values()):
            self.memory_hits += 1
        elif all(part is not None for part in parts.values()):
            self.disk_hits += 1
        else:
            missing = [m for m, part in parts.items() if part is None]
            computed, audio_source = self._compute(task, missing)
            self.encoder_runs += 1
            for m in missing:
                parts[m] = computed
                if m == "audio" and audio_source not in ("audio file", "video track"):
                    continue  # a fallback from an unreadable audio file depends on the video too: not stored
                if self.directory is not None:
                    about = {"file": task.video if m == "video" else task.audio or task.video,
                             "encoder": self.fingerprints[m]}  # fmt: skip
                    save_entry(self.directory, keys[m], m, computed, about)
        for m, key in keys.items():
            if key is not None:
                self._memory[key] = parts[m]
        return merge(parts["video"], parts["audio"])

    def _key(self, task: Task, modality: str) -> str | None:
        if self.encoders[modality] is None:
            return None
        return feature_key(task, modality, self.fingerprints[modality])

    def _compute(self, task: Task, modalities: list[str]) -> tuple[Encoded, str]:
        """Decode the task's media and encode the given modalities; also says where the sound came from."""
        encoders = [m for m in (self.model.vision, self.model.audio) if m is not None]
        modes = [m.training for m in encoders]
        for module in encoders:
            module.eval()
        try:
            with torch.no_grad():
                frames, wave, problems, _ = self._media.decode(task, self.cfg.media)
                encoded = self.model.encode(
                    frames if "video" in modalities else None, wave if "audio" in modalities else None
                )
        finally:
            for module, mode in zip(encoders, modes, strict=True):
                module.train(mode)
        audio_problems = [text for where, text in problems if where == "audio"]
        audio_source = audio_problems[0] if audio_problems else "audio file"
        # float32 copies, exactly what a later disk hit returns
        return dataclasses.replace(
            encoded,
            video=None if encoded.video is None else tuple(t.float().contiguous() for t in encoded.video),
            audio=None if encoded.audio is None else tuple(t.float().contiguous() for t in encoded.audio),
        ), audio_source

    def stats(self) -> dict[str, int]:
        return {
            "encoder_runs": self.encoder_runs,
            "disk_hits": self.disk_hits,
            "memory_hits": self.memory_hits,
        }
