"""audio.window: the Whisper encoder on the whole padded 30 s window (full) or on the frames of real audio (fit).

The tiny random-init Whisper checks the mechanics (fit reproduces WhisperEncoder.forward on a full window, keeps
the token count and times, decodes from the shorter states); the real tiny.en weights check what a transcript
looks like under each setting (marked real_weights).
"""

import wave

import numpy as np
import pytest
import torch

from solution.config import AudioConfig, load_config
from solution.encoders import audio as A
from solution.errors import ConfigError
from solution.media.audio import SAMPLE_RATE


def _encoder(window: str, *overrides: str) -> A.WhisperAudioEncoder:
    torch.manual_seed(0)  # the tiny encoder's weights
    return A.build_audio_encoder(load_config("tiny", [f"audio.window={window}", *overrides]).audio)


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1


def test_encode_mel_reproduces_whisper_encoder_forward_on_a_full_window():
    enc = _encoder("full")
    feats, _ = enc._windows(_wave(30.0))
    with torch.no_grad():
        assert torch.allclose(
            A.encode_mel(enc.encoder, feats), enc.encoder(feats).last_hidden_state, atol=1e-5
        )


def test_fit_equals_full_on_exactly_30_seconds():
    wave_ = _wave(30.0)
    (t_full, s_full, _), (t_fit, s_fit, _) = _encoder("full")(wave_), _encoder("fit")(wave_)
    assert A.fit_mel_frames(1500) == A.WINDOW_MEL
    assert torch.allclose(t_fit, t_full, atol=1e-5) and torch.equal(s_fit, s_full)


@pytest.mark.parametrize("seconds", [0.0, 0.3, 1.0, 3.2, 7.7, 29.9, 65.0])
def test_fit_keeps_token_count_and_times(seconds):
    full, fit = _encoder("full", "audio.max_tokens=200"), _encoder("fit", "audio.max_tokens=200")
    wave_ = _wave(seconds)
    (t_full, s_full, _), (t_fit, s_fit, _) = full(wave_), fit(wave_)
    assert t_fit.shape == t_full.shape and torch.equal(s_fit, s_full)


def test_fit_encodes_only_the_real_frames(monkeypatch):
    lengths = []
    encode_mel = A.encode_mel
    monkeypatch.setattr(
        A, "encode_mel", lambda enc, feats: (lengths.append(feats.shape), encode_mel(enc, feats))[1]
    )
    _encoder("fit")(_wave(3.2))
    assert [s[-1] for s in lengths] == [2 * 160 + 2]  # 3.2 s = 160 encoder frames, + the convolutions' margin
    lengths.clear()
    _encoder("fit", "audio.max_tokens=200")(_wave(65.0))  # two full windows together, then the fitted 5 s
    assert [(s[0], s[-1]) for s in lengths] == [(2, 3000), (1, 2 * 250 + 2)]
    assert A.fit_mel_frames(1) == 100  # at least MIN_FIT_SECONDS


def test_transcript_decodes_from_fitted_states():
    """generate takes the shorter encoder states as they are: same number of tokens as from a full window."""

    class Ids:
        def batch_decode(self, ids, skip_special_tokens=True):
            return [" ".join(map(str, row.tolist())) for row in ids]

    enc = _encoder("fit", "audio.transcript_max_tokens=8")
    enc.tokenizer = Ids()
    feats, real = enc._windows(_wave(3.0))
    n = A.fit_mel_frames(real[0])
    with torch.no_grad():
        short = A.encode_mel(enc.encoder, feats[:, :, :n])
        fitted = enc._transcribe(feats[:, :, :n], short)
        padded = enc._transcribe(feats, enc.encoder(feats).last_hidden_state)
    assert short.shape[1] == n // 2 < 1500
    assert len(fitted) == len(padded) == 1 and len(fitted[0].split()) == len(padded[0].split()) == 8


def test_auto_tokens_are_the_fitted_ones():
    """auto encodes fitted windows for the audio tokens, whether or not a transcript is made later."""
    wave_ = _wave(3.2)
    (t_fit, s_fit, _), (t_auto, s_auto, _) = _encoder("fit")(wave_), _encoder("auto")(wave_)
    assert torch.equal(t_auto, t_fit) and torch.equal(s_auto, s_fit)
    assert AudioConfig().window == "auto"


def test_bad_window_is_a_config_error():
    with pytest.raises(ConfigError, match=r"audio\.window: expected one of auto, fit, full, got 'half'"):
        load_config("tiny", ["audio.window=half"])


# -- real weights -------------------------------------------------------------------------------------------------

LIBRIVOX = "usr/share/pocketsphinx/test/data/librivox"
KEY_WORDS = {  # as in test_weights.test_whisper_transcribes_real_speech
    "sense_and_sensibility_01_austen_64kb-0870": {"john", "dashwood", "leisure", "prudently"},
    "sense_and_sensibility_01_austen_64kb-0930": {"might", "even", "amiable", "himself"},
}


@pytest.fixture(scope="module")
def whisper_encoder():
    from solution import KIT_ROOT

    if not (KIT_ROOT / "weights" / "whisper-tiny.en" / "model.safetensors").exists():
        pytest.skip("pocket weights not prepared (make test prepares them first)")
    return A.build_audio_encoder(load_config("pocket").audio)


def _speech(clip: str) -> np.ndarray:
    from debian_media import debian_file

    path = debian_file("pocketsphinx-testdata", f"{LIBRIVOX}/{clip}.wav")
    with wave.open(str(path)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def _words(text: str) -> set[str]:
    import re

    return set(re.sub(r"[^a-z' ]", " ", text.lower().replace("mr.", "mister")).split())


@pytest.mark.real_weights
@pytest.mark.parametrize("clip", sorted(KEY_WORDS))
def test_real_transcripts_under_each_window(whisper_encoder, clip):
    enc, speech = whisper_encoder, _speech(clip)
    base = enc.cfg
    transcripts = {}
    try:
        for window in ("full", "fit", "auto"):
            enc.cfg = AudioConfig(**{**vars(base), "window": window})
            tokens, times, transcripts[window] = enc(speech)
            assert tokens.shape == (int(np.ceil(len(speech) / SAMPLE_RATE)), 384)
    finally:
        enc.cfg = base
    assert KEY_WORDS[clip] <= _words(transcripts["full"]), transcripts
    assert KEY_WORDS[clip] <= _words(transcripts["fit"]), transcripts  # the words survive (0930 repeats them)
    assert transcripts["auto"] == transcripts["full"]  # speech: auto encodes the window again in full for it


@pytest.mark.real_weights
def test_no_speech_gate_drops_the_transcript_of_beeps(whisper_encoder):
    """Beeps get no transcript (tiny.en would write "you"); speech keeps its transcript under every window."""
    from solution import synth

    enc, base = whisper_encoder, whisper_encoder.cfg
    beeps = synth.beeps(3, 3.0)
    clip = "sense_and_sensibility_01_austen_64kb-0930"
    speech = _speech(clip)
    try:
        transcripts = {}
        for window, threshold in [("full", 0.6), ("fit", 0.6), ("auto", 0.6), ("auto", 1.0)]:
            enc.cfg = AudioConfig(**{**vars(base), "window": window, "no_speech_threshold": threshold})
            transcripts[window, threshold] = enc(beeps)[2], enc(speech)[2]
        with torch.no_grad():
            feats, real = enc._windows(beeps)
            fitted = A.encode_mel(enc.encoder, feats[:, :, : A.fit_mel_frames(real[0])])
            p_beeps = enc.no_speech_probability(fitted).item()
            feats, real = enc._windows(speech)
            fitted = A.encode_mel(enc.encoder, feats[:, :, : A.fit_mel_frames(real[0])])
            p_speech = enc.no_speech_probability(fitted).item()
    finally:
        enc.cfg = base
    assert p_beeps > 0.6 > 0.3 > p_speech, (p_beeps, p_speech)
    for (window, threshold), (on_beeps, on_speech) in transcripts.items():
        assert (on_beeps == "") == (threshold < 1), (window, threshold, on_beeps)  # 1.0: the gate is off
        assert KEY_WORDS[clip] <= _words(on_speech), (window, on_speech)
