"""Synthesise test and sample media from numpy arrays with PyAV alone (no system FFmpeg).

Containers are chosen by file suffix. Content generators are deterministic pure functions.
Import av before decord in a process that encodes VP8/VP9: decord exports its own, older libvpx process-wide,
and a PyAV loaded after it fails to open the libvpx encoder ("Invalid argument").
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (default video codec, audio codec or None when the container gets no sound track)
CONTAINER_CODECS: dict[str, tuple[str, str | None]] = {
    ".mp4": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".webm": ("libvpx", "libopus"),
    ".avi": ("mpeg4", "pcm_s16le"),
}
AUDIO_CODECS: dict[str, str] = {".mp3": "libmp3lame", ".wav": "pcm_s16le"}
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}  # channel count -> FFmpeg layout
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
TIME_BASE = Fraction(1, 1000)  # millisecond pts for variable-frame-rate videos
Colour = tuple[int, int, int]
PALETTE: dict[str, Colour] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 50, 200),
    "cyan": (40, 200, 210),
}
"""Named colours of the synthetic clips, far apart in RGB so that decoding noise cannot confuse them."""


def _add_audio_stream(
    container: av.container.OutputContainer, codec: str, wave: np.ndarray, rate: int
) -> tuple[av.AudioStream, av.AudioFrame]:
    """Add an audio stream for `wave` (samples,) or (samples, channels) float in [-1, 1]; return it and its frame."""
    samples = wave.reshape(len(wave), -1)
    if codec == "libopus" and rate not in OPUS_RATES:
        raise ValueError(f"opus needs a sample rate in {OPUS_RATES}, got {rate}")
    if samples.shape[1] not in LAYOUTS:
        raise ValueError(f"audio must have one of {sorted(LAYOUTS)} channels, got shape {wave.shape}")
    stream = container.add_stream(codec, rate=rate, layout=LAYOUTS[samples.shape[1]])
    planar = np.ascontiguousarray(np.clip(samples, -1.0, 1.0).T, dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
    frame.sample_rate = rate
    frame.pts = 0
    return stream, frame


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    codec: str | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    gop: int = 250,
    times: Sequence[float] | None = None,
) -> Path:
    """Encode (T, H, W, 3) uint8 RGB `frames` into `path`; the suffix picks the container and default codecs.

    `audio` ((samples,) or (samples, channels) float in [-1, 1]) becomes the sound track when the container has an
    audio codec. `gop` is the keyframe interval. `times` (seconds, increasing) gives each frame's own timestamp,
    which makes a variable-frame-rate video; otherwise frame i is shown at i / fps.
    """
    path = Path(path)
    if path.suffix not in CONTAINER_CODECS:
        raise ValueError(f"{path}: unsupported video suffix; expected one of {sorted(CONTAINER_CODECS)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    default_codec, audio_codec = CONTAINER_CODECS[path.suffix]
    codec = codec or default_codec
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    rate = Fraction(fps).limit_denominator(1001)
    if times is None:  # one tick per frame: AVI only knows constant frame rates
        time_base, pts = 1 / rate, np.arange(len(frames))
    else:
        time_base, pts = (
            TIME_BASE,
            np.round(np.asarray(times, dtype=np.float64) / float(TIME_BASE)).astype(int),
        )

    with av.open(str(path), mode="w") as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.gop_size = gop
        video.codec_context.time_base = time_base
        if codec in ("libx264", "h264"):
            video.options = {"preset": "ultrafast", "threads": "1"}  # deterministic, fast
        elif codec.startswith("libvpx"):
            video.options = {"deadline": "realtime", "cpu-used": "8", "threads": "1"}
        sound = None
        if audio is not None and audio_codec is not None:
            sound = _add_audio_stream(container, audio_codec, audio, audio_rate)
        for image, tick in zip(frames[:, :height, :width], pts, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = int(tick), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            stream, frame = sound
            container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return path


def write_audio(path: str | Path, wave: np.ndarray, rate: int = 16000) -> Path:
    """Encode `wave` ((samples,) or (samples, channels) float in [-1, 1]) as .mp3 or .wav."""
    path = Path(path)
    if path.suffix not in AUDIO_CODECS:
        raise ValueError(f"{path}: unsupported audio suffix; expected one of {sorted(AUDIO_CODECS)}")
    with av.open(str(path), mode="w") as container:
        stream, frame = _add_audio_stream(container, AUDIO_CODECS[path.suffix], wave, rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def tone(freq_hz: float, seconds: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32 (samples,)."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def beeps(
    count: int, seconds: float, rate: int = 16000, freq_hz: float = 880.0, beep_seconds: float = 0.15
) -> np.ndarray:
    """`count` short tones evenly spread over `seconds` of silence, float32 (samples,)."""
    wave = np.zeros(round(seconds * rate), dtype=np.float32)
    beep = tone(freq_hz, beep_seconds, rate)
    for centre in (np.arange(count) + 0.5) * seconds / count:
        start = round(centre * rate) - len(beep) // 2
        wave[start : start + len(beep)] = beep
    return wave


def moving_square(
    colour: Colour,
    background: Colour = (128, 128, 128),
    size: tuple[int, int] = (160, 120),
    fps: float = 10.0,
    seconds: float = 3.0,
    reverse: bool = False,
) -> np.ndarray:
    """A square of `colour` moving left to right (right to left if `reverse`) over `background`: (T, H, W, 3)."""
    width, height = size
    side = height // 3
    count = max(1, round(fps * seconds))
    clip = np.empty((count, height, width, 3), dtype=np.uint8)
    clip[:] = background
    lefts = np.linspace(0, width - side, count).round().astype(int)
    top = (height - side) // 2
    for image, left in zip(clip, lefts[::-1] if reverse else lefts, strict=True):
        image[top : top + side, left : left + side] = colour
    return clip


def colour_clip(
    colours: Sequence[Colour], size: tuple[int, int] = (160, 120), fps: float = 10.0, seconds: float = 3.0
) -> np.ndarray:
    """Equal segments of solid `colours` in order, with a white square moving left to right: (T, H, W, 3)."""
    clip = moving_square((255, 255, 255), (0, 0, 0), size, fps, seconds)
    background = (clip == 0).all(axis=-1)
    segment = np.arange(len(clip)) * len(colours) // len(clip)
    palette = np.asarray(colours, dtype=np.uint8)[segment]  # (T, 3)
    return np.where(background[..., None], palette[:, None, None, :], clip)
