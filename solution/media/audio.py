"""Load audio as float32 mono at 16 kHz, and the contest's rule for which sound a task uses (its audio file,
else the video's own sound track).

decord decodes the whole track into memory before it can be cut (a 2-hour track: about 7 GB and 30 s or more),
so it only reads files that are needed whole; a track longer than `max_seconds` (or of unknown length) is
streamed by PyAV, which stops once `max_seconds` are decoded. PyAV is also the fallback when decord cannot
read a file.
"""

from __future__ import annotations

from pathlib import Path

# av must be imported before decord (see solution/media/video.py).
import av
import decord
import numpy as np

from solution.errors import MediaError

SAMPLE_RATE = 16000
EVENT_HOP_SECONDS = 0.01  # loudness is measured over hops of this length
EVENT_LEVEL = 0.1  # a hop sounds when its RMS exceeds this share of the clip's loudest hop's ...
EVENT_ABOVE_MEDIAN = 4.0  # ... and this multiple of the clip's median hop (its background level)
EVENT_FLOOR = 1e-3  # and this absolute RMS: a silent or near-silent clip has no events
EVENT_MERGE_SECONDS = 0.05  # sounding stretches closer than this are one event
EVENT_MIN_SECONDS = 0.03  # shorter events (clicks) are dropped


class NoAudioStream(MediaError):
    """The media file is readable but carries no audio stream."""


def _describe(error: Exception) -> str:
    """The error's type and first message line (decord appends a C++ stack trace)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _decode_decord(path: Path) -> np.ndarray:
    """The whole audio stream, downmixed to mono and resampled by decord's FFmpeg."""
    reader = decord.AudioReader(str(path), sample_rate=SAMPLE_RATE, mono=True)
    return reader[:].asnumpy()[0]


def _decode_pyav(path: Path, max_samples: int | None) -> np.ndarray:
    """The audio stream, downmixed to mono and resampled by PyAV; stops once `max_samples` are decoded."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise NoAudioStream(f"{path}: no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks, count = [], 0
        for frame in container.decode(container.streams.audio[0]):
            new = [out.to_ndarray()[0] for out in resampler.resample(frame)]
            chunks += new
            count += sum(len(chunk) for chunk in new)
            if max_samples is not None and count >= max_samples:
                break
        else:
            chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _probe_audio(path: Path) -> tuple[bool, float | None, bool]:
    """From the header: whether the file lists an audio stream, the stream's seconds (None when not stated),
    and whether the header could be read at all (if not, the decoders are left to report why)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return False, None, True
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return True, float(stream.duration * stream.time_base), True
            seconds = container.duration / av.time_base if container.duration is not None else None
            return True, seconds, True
    except av.FFmpegError:
        return True, None, False


def load_audio(path: str | Path, max_seconds: float | None = None) -> np.ndarray:
    """Float32 mono waveform at SAMPLE_RATE, in [-1, 1], at most `max_seconds` long.

    Raises NoAudioStream for a file without sound and MediaError for a missing or unreadable one.
    """
    path = Path(path)
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if not path.is_file():
        raise MediaError(f"{path}: audio file not found")
    has_audio, seconds, readable = _probe_audio(path)
    if not has_audio:
        raise NoAudioStream(f"{path}: no audio stream (expected a file with a sound track)")
    max_samples = None if max_seconds is None else round(max_seconds * SAMPLE_RATE)
    wave, decord_reason = None, "not used (the track is longer than max_seconds or of unknown length)"
    if max_seconds is None or not readable or (seconds is not None and seconds <= max_seconds):
        try:
            wave = _decode_decord(path)
        except Exception as error:  # decord raises DECORDError or RuntimeError on bad files
            decord_reason = _describe(error)
    if wave is None:
        try:
            wave = _decode_pyav(path, max_samples)
        except Exception as error:
            raise MediaError(
                f"{path}: cannot decode audio (decord: {decord_reason}; PyAV: {_describe(error)})"
            ) from error
    if wave.size == 0:
        raise MediaError(f"{path}: the audio stream decoded to no samples")
    # FFmpeg's downmix adds channels at -3 dB, so loud correlated stereo can exceed 1 (ffmpeg -ac 1 clips too).
    return np.clip(wave[:max_samples], -1.0, 1.0).astype(np.float32, copy=False)


def sound_events(wave: np.ndarray, max_events: int, rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """The first `max_events` sound events of a waveform: (start, end) seconds of each stretch that is loud against
    the clip's own levels (see the EVENT_* constants), in time order.

    A beep in silence is one event; a sentence is a few (its pauses split it); steady noise or music with no
    quiet between its notes is one long event or none.
    """
    hop = round(rate * EVENT_HOP_SECONDS)
    n = len(wave) // hop
    if n == 0 or max_events <= 0:
        return []
    rms = np.sqrt(np.mean(np.square(wave[: n * hop].reshape(n, hop), dtype=np.float64), axis=1))  # (n,)
    threshold = max(EVENT_LEVEL * rms.max(), EVENT_ABOVE_MEDIAN * np.median(rms), EVENT_FLOOR)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (rms > threshold).astype(np.int8), [0]])))
    events: list[list[int]] = []  # [first hop, end hop) of each event
    for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if events and (start - events[-1][1]) * EVENT_HOP_SECONDS < EVENT_MERGE_SECONDS:
            events[-1][1] = end
        else:
            events.append([start, end])
    long_enough = [e for e in events if (e[1] - e[0]) * EVENT_HOP_SECONDS >= EVENT_MIN_SECONDS]
    return [(start * hop / rate, end * hop / rate) for start, end in long_enough[:max_events]]


def task_audio(
    audio_path: Path | None, video_path: Path | None, max_seconds: float | None = None
) -> tuple[np.ndarray | None, str]:
    """The sound a task uses, and where it came from: "audio file", "video track" or "none: <reason>".

    The task's audio file comes first; without one (the record's audio is ""), or when it cannot be read, the
    video's own sound track is used, and the description says why.
    """
    problem = ""
    if audio_path is not None:
        try:
            return load_audio(audio_path, max_seconds), "audio file"
        except MediaError as error:
            problem = f"audio file unreadable: {error}"
    if video_path is None:
        return None, f"none: {problem or 'no audio file and no video'}"
    try:
        wave = load_audio(video_path, max_seconds)
    except NoAudioStream:
        return None, f"none: {problem + '; ' if problem else ''}the video has no sound track"
    except MediaError as error:
        return None, f"none: {problem + '; ' if problem else ''}video sound track unreadable: {error}"
    return wave, f"video track ({problem})" if problem else "video track"
