"""Media for the fault-injection suite, made with PyAV in a second or two: broken files, odd streams, 4K
frames and a 2-hour clip built by copying one GOP's packets (no re-encoding)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from solution import synth


def good_clip(path: Path, seconds: float = 2.0, size: tuple[int, int] = (96, 64)) -> Path:
    """A small h264 + AAC clip: a red square moving over grey, a 440 Hz tone."""
    frames = synth.moving_square((220, 30, 30), size=size, fps=10, seconds=seconds)
    return synth.write_video(path, frames, 10, audio=synth.tone(440, seconds), gop=10)


def silent_clip(path: Path) -> Path:
    """An mp4 with a video stream and no audio stream."""
    return synth.write_video(path, synth.moving_square((40, 60, 220), size=(96, 64), fps=10, seconds=1), 10)


def audio_only_mp4(path: Path, seconds: float = 2.0) -> Path:
    """An mp4 with an AAC stream and no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(synth.tone(660, seconds)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def clip_4k(path: Path) -> Path:
    """Three 3840x2160 frames (0.6 s at 5 fps), with sound."""
    frames = synth.moving_square((30, 170, 60), size=(3840, 2160), fps=5, seconds=0.6)
    return synth.write_video(path, frames, 5, audio=synth.tone(330, 0.6))


def truncated(source: Path, path: Path, keep: float = 0.5) -> Path:
    """The first `keep` share of `source`'s bytes (an mp4 whose index, written last, is cut off)."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def broken_middle(source: Path, path: Path, share: float = 0.2, seed: int = 0) -> Path:
    """`source` with the middle `share` of its bytes replaced by random bytes."""
    data = bytearray(source.read_bytes())
    start, length = int(len(data) * (0.5 - share / 2)), int(len(data) * share)
    data[start : start + length] = np.random.default_rng(seed).bytes(length)
    path.write_bytes(bytes(data))
    return path


def long_clip(path: Path, hours: float = 2.0) -> Path:
    """A low-resolution clip of `hours` with sound: one 10-second GOP (64x48, 5 fps, 8 kHz AAC at 8 kb/s)
    encoded once, then its packets copied back to back with shifted timestamps (a remux, as bench/pipeline.py
    does)."""
    short = path.with_name(path.stem + ".gop.mp4")
    with av.open(str(short), mode="w") as container:
        video = container.add_stream("libx264", rate=5)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.gop_size = 50
        video.options = {"preset": "ultrafast", "threads": "1"}
        sound = container.add_stream("aac", rate=8000, layout="mono")
        sound.bit_rate = 8000
        for i, image in enumerate(synth.moving_square((220, 30, 30), size=(64, 48), fps=5, seconds=10)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        wave = av.AudioFrame.from_ndarray(synth.tone(440, 10, rate=8000)[None], format="fltp", layout="mono")
        wave.sample_rate, wave.pts = 8000, 0
        container.mux(sound.encode(wave))
        container.mux(sound.encode())
    copies = round(hours * 3600 / 10)
    with av.open(str(short)) as source, av.open(str(path), mode="w") as target:
        outs = {s.index: target.add_stream_from_template(s) for s in source.streams}
        packets = [p for p in source.demux() if p.size]
        spans = {}
        for index in outs:
            own = [p for p in packets if p.stream.index == index]
            spans[index] = max(p.pts + p.duration for p in own) - min(p.pts for p in own)
        for copy in range(copies):
            for p in packets:
                packet = av.Packet(bytes(p))
                shift = copy * spans[p.stream.index]
                packet.pts, packet.dts = p.pts + shift, p.dts + shift
                packet.duration, packet.time_base, packet.is_keyframe = p.duration, p.time_base, p.is_keyframe
                packet.stream = outs[p.stream.index]
                target.mux(packet)
    short.unlink()
    return path
