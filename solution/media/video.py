"""Sample frames from a video file.

decord seeks to the sampled frames and scales them while decoding; PyAV, seeking near each sampled frame, is the
fallback for files decord cannot open or decode. Neither decodes the whole video, so memory stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# av must be imported before decord: decord loads its bundled FFmpeg 4 libraries with RTLD_GLOBAL, and a PyAV
# imported after it binds to decord's older libvpx (libvpx encoding then fails with "Invalid argument").
import av
import decord
import numpy as np

from solution.errors import MediaError

DEFAULT_MAX_SIDE = 448
FALLBACK_FPS = 25.0  # assumed frame rate when a file states none
# How far (in segments) a sampled frame may move from its segment's centre to land on a keyframe.
KEYFRAME_TOLERANCE = 0.25
MAX_SANE_SECONDS = 1e6  # decord reports AV_NOPTS_VALUE-derived garbage (~9e15 s) for some Matroska files


@dataclass(frozen=True)
class Frames:
    """Frames sampled from a video."""

    pixels: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (T,) float32 seconds of each sampled frame, from the first frame
    duration: float  # seconds of the whole video


def sample_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Indices of the centre frames of `num_frames` equal segments of `num_available` frames (TSN-style).

    With fewer frames available than asked for, frames repeat: exactly `num_frames` sorted indices come back.
    """
    if num_available <= 0 or num_frames <= 0:
        raise ValueError(f"need num_available > 0 and num_frames > 0, got {num_available} and {num_frames}")
    return (2 * np.arange(num_frames) + 1) * num_available // (2 * num_frames)


def snap_to_keyframes(indices: np.ndarray, keyframes: np.ndarray, tolerance: float) -> np.ndarray:
    """Move each index to its nearest keyframe when that is at most `tolerance` frames away.

    A keyframe decodes on its own; any other frame needs every frame from the keyframe before it (up to a whole
    GOP, often 250 frames). In a long video this is most of the decoding time, and moving a sampled frame by a
    few seconds within its segment does not change what uniform sampling sees.
    """
    if len(keyframes) == 0:
        return indices
    nearest = keyframes[np.abs(keyframes[None, :] - indices[:, None]).argmin(axis=1)]
    return np.where(np.abs(nearest - indices) <= tolerance, nearest, indices)


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `max_side`, keeping the aspect ratio, even."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def _timeline(starts: np.ndarray, ends: np.ndarray, fps: float) -> tuple[np.ndarray, float]:
    """Frame start times from the first frame, and the duration; evenly spaced at `fps` when the stamps are bad."""
    sane = (
        np.isfinite(starts).all()
        and np.isfinite(ends).all()
        and np.abs(ends).max() < MAX_SANE_SECONDS
        and (np.diff(starts) >= 0).all()
    )
    if not sane:
        starts = np.arange(len(starts)) / fps
        ends = starts + 1 / fps
    return starts - starts[0], float(max(ends.max(), starts[-1]) - starts[0])


def _describe(error: Exception) -> str:
    """The error's type and first message line (decord appends a C++ stack trace)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _probe_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first video stream, read from the header."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        context = container.streams.video[0].codec_context
        return context.width, context.height


def _read_decord(path: Path, num_frames: int, max_side: int, keyframe_tolerance: float) -> Frames:
    """Seek to the sampled frames with decord, scaling while decoding."""
    width, height = output_size(*_probe_size(path), max_side)
    reader = decord.VideoReader(str(path), width=width, height=height)
    stamps = reader.get_frame_timestamp(np.arange(len(reader)))  # (N, 2) start, end; VFR-proof
    starts, duration = _timeline(stamps[:, 0], stamps[:, 1], reader.get_avg_fps() or FALLBACK_FPS)
    indices = sample_indices(len(starts), num_frames)
    tolerance = keyframe_tolerance * len(starts) / num_frames
    indices = snap_to_keyframes(indices, np.asarray(reader.get_key_indices(), dtype=np.int64), tolerance)
    pixels = reader.get_batch(indices).asnumpy()
    if pixels.shape != (num_frames, height, width, 3):
        raise MediaError(f"{path}: decord returned frames of shape {pixels.shape}")
    return Frames(pixels, starts[indices].astype(np.float32), duration)


def _decode_at(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    targets: list[int],
    keyframes: np.ndarray,
    size: tuple[int, int],
) -> dict[int, np.ndarray]:
    """RGB pictures of `size` of the first frame at or after each of the sorted `targets` (pts).

    Decoding goes on from the previous target unless a keyframe lies between, in which case it seeks there.
    At the end of a stream whose index promised more frames (a truncated file), the last decoded frame serves.
    """
    pictures: dict[int, np.ndarray] = {}
    decoded: Iterator[av.VideoFrame] = iter(())
    frame, position = None, -math.inf
    for target in targets:
        keyframe = int(keyframes[max(0, np.searchsorted(keyframes, target, side="right") - 1)])
        if position < keyframe:
            container.seek(keyframe, stream=stream)
            decoded = container.decode(stream)
        while position < target and (frame := next(decoded, None)) is not None:
            position = target if frame.pts is None else frame.pts
        if frame is None:
            raise MediaError(f"{container.name}: no frame could be decoded")
        pictures[target] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    return pictures


def _read_pyav(path: Path, num_frames: int, max_side: int, keyframe_tolerance: float) -> Frames:
    """Index the packets (no decoding), then decode from the keyframe before each sampled frame with PyAV."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or FALLBACK_FPS)
        tick = round(1 / fps / stream.time_base)
        packets = sorted(
            (
                packet.pts if packet.pts is not None else packet.dts,
                packet.duration or tick,
                packet.is_keyframe,
            )
            for packet in container.demux(stream)
            if packet.size and (packet.pts is not None or packet.dts is not None)
        )
        if not packets:
            raise MediaError(f"{path}: the video stream has no frames")
        pts, lengths, keyframe = (np.array(column) for column in zip(*packets, strict=True))
        seconds = float(stream.time_base)
        starts, duration = _timeline(pts * seconds, (pts + lengths) * seconds, fps)
        tolerance = keyframe_tolerance * len(pts) / num_frames
        indices = snap_to_keyframes(sample_indices(len(pts), num_frames), np.flatnonzero(keyframe), tolerance)
        keyframes = pts[keyframe] if keyframe.any() else pts[:1]
        size = output_size(stream.codec_context.width, stream.codec_context.height, max_side)
        targets = pts[indices].tolist()
        pictures = _decode_at(container, stream, sorted(set(targets)), keyframes, size)
    return Frames(np.stack([pictures[t] for t in targets]), starts[indices].astype(np.float32), duration)


def read_frames(
    path: str | Path,
    num_frames: int,
    max_side: int = DEFAULT_MAX_SIDE,
    keyframe_tolerance: float = KEYFRAME_TOLERANCE,
) -> Frames:
    """Sample `num_frames` frames uniformly (segment centres) from the video at `path`.

    A sampled frame moves to a keyframe within `keyframe_tolerance` segments of its centre (0: exact centres),
    which keeps the cost of a long video close to that of a short one. Frames are scaled so the longer side is at
    most `max_side` (aspect ratio kept, even sizes). decord reads first; PyAV is the fallback. Raises
    MediaError when the file is missing or neither reader can decode it.
    """
    path = Path(path)
    if num_frames <= 0 or max_side <= 0 or not 0 <= keyframe_tolerance <= 0.5:
        raise ValueError(
            f"need num_frames > 0, max_side > 0 and 0 <= keyframe_tolerance <= 0.5, "
            f"got {num_frames}, {max_side} and {keyframe_tolerance}"
        )
    if not path.is_file():
        raise MediaError(f"{path}: video file not found")
    try:
        return _read_decord(path, num_frames, max_side, keyframe_tolerance)
    except Exception as error:  # decord raises DECORDError, RuntimeError or AssertionError on bad files
        decord_reason = _describe(error)
    try:
        return _read_pyav(path, num_frames, max_side, keyframe_tolerance)
    except Exception as error:
        raise MediaError(
            f"{path}: cannot read video frames (decord: {decord_reason}; PyAV: {_describe(error)})"
        ) from error
