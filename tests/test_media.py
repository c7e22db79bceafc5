"""Frame sampling and audio loading on clips synthesised with solution.synth."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from solution import synth
from solution.errors import MediaError
from solution.media import audio, video
from solution.media.audio import SAMPLE_RATE, NoAudioStream, load_audio, task_audio
from solution.media.video import output_size, read_frames, sample_indices, snap_to_keyframes

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def rgb_clip(fps: float, seconds: float, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A red, then green, then blue clip with a moving white square."""
    return synth.colour_clip([RED, GREEN, BLUE], size, fps, seconds)


def dominant(pixels: np.ndarray) -> np.ndarray:
    """Median colour of an image (the background)."""
    return np.median(pixels.reshape(-1, 3), axis=0)


def peak_hz(wave: np.ndarray) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)[spectrum.argmax()])


def check_frames(frames: video.Frames, count: int) -> None:
    """Shapes, dtypes and timestamp invariants every read must satisfy."""
    assert frames.pixels.dtype == np.uint8 and frames.pixels.ndim == 4 and frames.pixels.shape[-1] == 3
    assert frames.pixels.shape[0] == count and frames.timestamps.shape == (count,)
    assert frames.timestamps.dtype == np.float32
    assert (np.diff(frames.timestamps) >= 0).all()
    assert frames.timestamps[0] >= 0 and frames.timestamps[-1] < frames.duration


# --- sampling ---------------------------------------------------------------------------------------------------


def test_sample_indices_golden() -> None:
    assert sample_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert sample_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert sample_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert sample_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


@pytest.mark.parametrize(("available", "wanted"), [(1, 1), (2, 7), (7, 7), (16, 8), (15001, 8), (250, 32)])
def test_sample_indices_invariants(available: int, wanted: int) -> None:
    indices = sample_indices(available, wanted)
    assert len(indices) == wanted
    assert indices.min() >= 0 and indices.max() < available
    assert (np.diff(indices) >= (1 if available >= wanted else 0)).all()
    assert set(indices.tolist()) == set(range(available)) or available > wanted  # repeats use every frame


@pytest.mark.parametrize(("available", "wanted"), [(0, 8), (8, 0), (-1, 3)])
def test_sample_indices_rejects_nonpositive(available: int, wanted: int) -> None:
    with pytest.raises(ValueError, match="num_available > 0"):
        sample_indices(available, wanted)


def test_snap_to_keyframes() -> None:
    keyframes = np.array([0, 250, 500, 750])
    assert snap_to_keyframes(np.array([10, 240, 380, 740]), keyframes, 20).tolist() == [0, 250, 380, 750]
    assert snap_to_keyframes(np.array([10, 240]), keyframes, 0).tolist() == [10, 240]
    assert snap_to_keyframes(np.array([3]), np.array([], dtype=np.int64), 5).tolist() == [3]


def test_output_size() -> None:
    assert output_size(640, 360, 448) == (448, 252)
    assert output_size(360, 640, 448) == (252, 448)
    assert output_size(160, 120, 448) == (160, 120)
    assert output_size(641, 361, 447) == (446, 252)  # 447 -> 446 (even), 251.7 -> 252
    assert output_size(5000, 10, 100) == (100, 2)


# --- video ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".mp4", None),
        (".mkv", None),
        (".webm", "libvpx"),
        (".webm", "libvpx-vp9"),
        (".avi", "mpeg4"),
        (".avi", "mjpeg"),
    ],
)
def test_read_frames_containers_and_colours(tmp_path: Path, suffix: str, codec: str | None) -> None:
    path = synth.write_video(tmp_path / f"clip{suffix}", rgb_clip(10, 3.0), 10, codec=codec)
    frames = read_frames(path, 6)
    check_frames(frames, 6)
    assert frames.pixels.shape[1:3] == (48, 64)
    assert frames.duration == pytest.approx(3.0, abs=0.01)
    np.testing.assert_allclose(frames.timestamps, [0.2, 0.7, 1.2, 1.7, 2.2, 2.7], atol=1e-4)
    for image, colour in zip(frames.pixels[::2], [RED, GREEN, BLUE], strict=True):
        np.testing.assert_allclose(dominant(image), colour, atol=12)


@pytest.mark.parametrize(("fps", "seconds"), [(25, 0.04), (10, 0.3), (30, 1.0), (25, 10.0)])
def test_read_frames_lengths_and_rates(tmp_path: Path, fps: float, seconds: float) -> None:
    path = synth.write_video(tmp_path / "clip.mp4", rgb_clip(fps, seconds, (32, 24)), fps)
    frames = read_frames(path, 8)
    check_frames(frames, 8)
    available = round(fps * seconds)
    assert frames.duration == pytest.approx(available / fps, abs=1e-3)
    expected = sample_indices(available, 8) / fps
    np.testing.assert_allclose(frames.timestamps, expected, atol=1e-3)


def test_read_frames_variable_frame_rate(tmp_path: Path) -> None:
    times = np.cumsum(np.r_[0.0, np.tile([0.3, 0.02], 10)])[:20]  # bursts: long and short frame durations
    path = synth.write_video(tmp_path / "vfr.mp4", rgb_clip(10, 2.0), 10, times=times)
    frames = read_frames(path, 5, keyframe_tolerance=0)
    check_frames(frames, 5)
    np.testing.assert_allclose(frames.timestamps, times[sample_indices(20, 5)], atol=1e-3)


def test_read_frames_max_side(tmp_path: Path) -> None:
    path = synth.write_video(tmp_path / "wide.mp4", rgb_clip(10, 0.3, (320, 180)), 10)
    assert read_frames(path, 2, max_side=100).pixels.shape == (2, 56, 100, 3)
    assert read_frames(path, 2, max_side=1000).pixels.shape == (2, 180, 320, 3)


def test_keyframes_are_preferred_in_long_videos(tmp_path: Path) -> None:
    path = synth.write_video(tmp_path / "gop.mp4", rgb_clip(10, 8.0, (32, 24)), 10, gop=10)
    snapped = read_frames(path, 4)  # segments of 20 frames: each centre is 0 or 5 frames from a keyframe
    np.testing.assert_allclose(snapped.timestamps, [1.0, 3.0, 5.0, 7.0], atol=1e-4)
    exact = read_frames(path, 4, keyframe_tolerance=0)
    np.testing.assert_allclose(exact.timestamps, [1.0, 3.0, 5.0, 7.0], atol=1e-4)
    odd = read_frames(path, 5, keyframe_tolerance=0)  # segments of 16: centres 8, 24, 40, 56, 72
    np.testing.assert_allclose(odd.timestamps, [0.8, 2.4, 4.0, 5.6, 7.2], atol=1e-4)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".avi"])
def test_pyav_fallback_matches_decord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    times = np.arange(40) * 0.1 + np.where(np.arange(40) > 20, 0.5, 0.0)  # a 0.5 s gap
    path = synth.write_video(tmp_path / f"clip{suffix}", rgb_clip(10, 4.0), 10, gop=12, times=times)
    expected = read_frames(path, 7)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("decord disabled by the test")

    monkeypatch.setattr(video.decord, "VideoReader", broken)
    fallback = read_frames(path, 7)
    check_frames(fallback, 7)
    np.testing.assert_allclose(fallback.timestamps, expected.timestamps, atol=0.02)
    assert fallback.duration == pytest.approx(expected.duration, abs=0.05)
    assert np.abs(fallback.pixels.astype(int) - expected.pixels).mean() < 4


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_truncated_file_with_wrong_metadata(tmp_path: Path, suffix: str) -> None:
    whole = synth.write_video(tmp_path / f"whole{suffix}", rgb_clip(25, 4.0, (160, 120)), 25, gop=10)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with av.open(str(path)) as container:  # the header still promises 100 frames (AVI) or 4 s (Matroska)
        promised = (
            container.streams.video[0].frames if suffix == ".avi" else container.duration / av.time_base
        )
        assert promised == (100 if suffix == ".avi" else 4.0)
    for frames in (read_frames(path, 8), video._read_pyav(path, 8, 448, 0.25)):
        check_frames(frames, 8)
        assert 1.0 < frames.duration < 3.0


def test_missing_and_corrupt_video(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="nothing.mp4: video file not found"):
        read_frames(tmp_path / "nothing.mp4", 4)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(MediaError, match=r"junk.mp4: cannot read video frames \(decord: .*; PyAV: .*\)"):
        read_frames(junk, 4)
    with pytest.raises(ValueError, match="num_frames > 0"):
        read_frames(junk, 0)


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    path = synth.write_audio(tmp_path / "sound.mp3", synth.tone(440, 0.5))
    with pytest.raises(MediaError, match="no video stream"):
        read_frames(path, 4)


# --- audio ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "rate"), [(".mp3", 16000), (".mp3", 44100), (".wav", 16000), (".wav", 48000)]
)
def test_load_audio_files(tmp_path: Path, suffix: str, rate: int) -> None:
    path = synth.write_audio(tmp_path / f"tone{suffix}", synth.tone(440, 1.0, rate), rate)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == pytest.approx(SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)  # mp3 adds encoder padding
    assert peak_hz(wave) == pytest.approx(440, abs=3)
    assert np.abs(wave[800:-800]).max() == pytest.approx(
        0.5, abs=0.03
    )  # decord's resampler overshoots at the start


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".avi"])
def test_load_audio_from_video_track(tmp_path: Path, suffix: str) -> None:
    path = synth.write_video(tmp_path / f"clip{suffix}", rgb_clip(10, 1.0), 10, audio=synth.tone(660, 1.0))
    wave = load_audio(path)
    assert len(wave) == pytest.approx(SAMPLE_RATE, abs=0.12 * SAMPLE_RATE)  # AAC and Opus add priming samples
    assert peak_hz(wave) == pytest.approx(660, abs=3)


def test_multichannel_becomes_mono(tmp_path: Path) -> None:
    left = synth.tone(440, 1.0)
    stereo = synth.write_audio(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1))
    assert peak_hz(load_audio(stereo)) == pytest.approx(440, abs=3)
    loud = synth.write_audio(tmp_path / "loud.wav", np.stack([left * 1.9, left * 1.9], axis=1))
    assert np.abs(load_audio(loud)).max() <= 1.0  # FFmpeg's -3 dB downmix exceeds 1 here; load_audio clips
    surround = synth.write_audio(tmp_path / "surround.wav", np.tile(left[:, None], (1, 6)))
    wave = load_audio(surround)
    assert wave.ndim == 1 and peak_hz(wave) == pytest.approx(440, abs=3)


def test_load_audio_truncates(tmp_path: Path) -> None:
    path = synth.write_audio(tmp_path / "long.wav", synth.tone(440, 3.0))
    assert len(load_audio(path, max_seconds=1.25)) == 20000
    assert len(load_audio(path, max_seconds=10)) == 3 * SAMPLE_RATE


def test_audio_longer_or_shorter_than_video(tmp_path: Path) -> None:
    long_sound = synth.write_video(tmp_path / "a.mp4", rgb_clip(10, 1.0), 10, audio=synth.tone(440, 2.5))
    short_sound = synth.write_video(tmp_path / "b.mp4", rgb_clip(10, 2.5), 10, audio=synth.tone(440, 1.0))
    assert read_frames(long_sound, 4).duration == pytest.approx(1.0, abs=0.01)
    assert len(load_audio(long_sound)) / SAMPLE_RATE == pytest.approx(2.5, abs=0.1)
    assert read_frames(short_sound, 4).duration == pytest.approx(2.5, abs=0.01)
    assert len(load_audio(short_sound)) / SAMPLE_RATE == pytest.approx(1.0, abs=0.1)


def test_pyav_audio_fallback_matches_decord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = synth.write_video(tmp_path / "clip.mp4", rgb_clip(10, 1.0), 10, audio=synth.beeps(3, 1.0))
    expected = load_audio(path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("decord disabled by the test")

    monkeypatch.setattr(audio.decord, "AudioReader", broken)
    fallback = load_audio(path)
    assert len(fallback) == pytest.approx(len(expected), abs=0.1 * SAMPLE_RATE)
    assert np.sqrt(np.mean(fallback**2)) == pytest.approx(np.sqrt(np.mean(expected**2)), rel=0.05)
    assert len(load_audio(path, max_seconds=0.5)) == SAMPLE_RATE // 2


def test_audio_errors(tmp_path: Path) -> None:
    silent = synth.write_video(tmp_path / "silent.mp4", rgb_clip(10, 0.5), 10)
    with pytest.raises(NoAudioStream, match="silent.mp4: no audio stream"):
        load_audio(silent)
    with pytest.raises(MediaError, match="absent.mp3: audio file not found"):
        load_audio(tmp_path / "absent.mp3")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(MediaError, match=r"junk.mp3: cannot decode audio \(decord: .*; PyAV: .*\)"):
        load_audio(junk)
    assert issubclass(NoAudioStream, MediaError)


def test_task_audio_rules(tmp_path: Path) -> None:
    clip = rgb_clip(10, 1.0)
    mp3 = synth.write_audio(tmp_path / "task.mp3", synth.tone(440, 1.0))
    with_track = synth.write_video(tmp_path / "track.mp4", clip, 10, audio=synth.tone(880, 1.0))
    silent = synth.write_video(tmp_path / "silent.mp4", clip, 10)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 100)

    wave, source = task_audio(mp3, with_track, 0.5)
    assert (
        source == "audio file"
        and len(wave) == SAMPLE_RATE // 2
        and peak_hz(wave) == pytest.approx(440, abs=5)
    )
    wave, source = task_audio(None, with_track, None)
    assert source == "video track" and peak_hz(wave) == pytest.approx(880, abs=3)
    wave, source = task_audio(junk, with_track, None)
    assert source.startswith("video track (audio file unreadable: ") and "junk.mp3" in source
    assert peak_hz(wave) == pytest.approx(880, abs=3)
    assert task_audio(None, silent, None) == (None, "none: the video has no sound track")
    wave, source = task_audio(tmp_path / "gone.mp3", silent, None)
    assert wave is None and source.startswith("none: audio file unreadable: ") and "no sound track" in source
    assert task_audio(None, None, None) == (None, "none: no audio file and no video")


def beeps_wave(
    starts: list[float], seconds: float = 3.0, length: float = 0.15, noise: float = 0.0
) -> np.ndarray:
    """A 1 kHz beep of `length` seconds at each start, over white noise of RMS `noise`."""
    rng = np.random.default_rng(0)
    wave = noise * rng.standard_normal(int(seconds * SAMPLE_RATE))
    t = np.arange(int(length * SAMPLE_RATE)) / SAMPLE_RATE
    for start in starts:
        i = int(start * SAMPLE_RATE)
        wave[i : i + len(t)] += 0.5 * np.sin(2 * np.pi * 1000 * t)
    return wave.astype(np.float32)


def test_sound_events_find_each_beep_in_time_order() -> None:
    starts = [0.3, 1.1, 2.4]
    for noise in (0.0, 0.01):  # silence, or a quiet background
        events = audio.sound_events(beeps_wave(starts, noise=noise), max_events=8)
        assert len(events) == 3, events
        for (start, end), expected in zip(events, starts, strict=True):
            assert abs(start - expected) <= 0.011 and abs(end - (expected + 0.15)) <= 0.011
    every = audio.sound_events(beeps_wave(starts), max_events=8)
    assert audio.sound_events(beeps_wave(starts), max_events=2) == every[:2]
    assert audio.sound_events(beeps_wave(starts), max_events=0) == []


def test_sound_events_merge_close_stretches_and_ignore_silence_and_clicks() -> None:
    close = audio.sound_events(beeps_wave([0.5, 0.67]), max_events=8)  # 20 ms apart: one event
    assert len(close) == 1 and abs(close[0][0] - 0.5) <= 0.011 and abs(close[0][1] - 0.82) <= 0.011
    assert audio.sound_events(np.zeros(3 * SAMPLE_RATE, np.float32), max_events=8) == []
    assert audio.sound_events(beeps_wave([], noise=0.01), max_events=8) == []  # steady noise: no event
    assert audio.sound_events(beeps_wave([1.0], length=0.01), max_events=8) == []  # a 10 ms click
    assert audio.sound_events(np.zeros(10, np.float32), max_events=8) == []  # shorter than a hop
