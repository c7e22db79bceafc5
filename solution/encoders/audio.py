"""Audio encoder: a 16 kHz waveform → pooled Whisper encoder tokens with timestamps, and a speech transcript.

Whisper's encoder sees 30-second windows (3000 log-mel frames) and emits 50 frames per second. We keep the
frames that cover real audio, average-pool them to `tokens_per_second`, and stamp each token with the centre
time of the frames it pools, in the same seconds as the video tokens. The decoder (when present) writes the
transcript from the encoder states of the same windows.

`audio.window` says how much of a window the encoder runs on. full: the whole padded 30 s window, as Whisper was
trained (transformers' WhisperEncoder.forward accepts nothing else). fit: only the log-mel frames that cover the
real audio (plus the convolutions' one-frame margin, at least `MIN_FIT_SECONDS`), through the encoder's own modules
(`encode_mel`: WhisperEncoder.forward with the position table cut to the input); windows that are full anyway (all
but the last of long audio) are unchanged. The mel features are computed on the padded window either way, so the
kept frames' inputs are identical; only the attention context shrinks. A 3 s clip then costs about a tenth of a
full window, but the states drift (pooled-token cosine to full 0.95-0.999, lowest on the shortest clips) and the
decoder, trained on padded windows only, often loops on them (repeats a phrase up to transcript_max_tokens).
auto: fit for the audio tokens; a window whose transcript is made is encoded again in full for the decoder.

A window gets a transcript only when it holds speech: Whisper's no-speech probability, read from the decoder's
first step on the (fitted) states, at most `audio.no_speech_threshold` (Whisper's own 0.6). On non-speech audio
tiny.en otherwise writes "you" or "Beeping", and a transcript costs a full-window encoding plus the decoding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import AudioConfig, resolve_path
from ..media.audio import SAMPLE_RATE
from ..weights import check_weights_dir

WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
FRAMES_PER_SECOND = 50  # Whisper encoder output rate: hop 160 samples, then a stride-2 convolution
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
assert SAMPLES_PER_FRAME * FRAMES_PER_SECOND == SAMPLE_RATE
MEL_PER_FRAME = 2  # log-mel frames per encoder frame (conv2's stride)
WINDOW_MEL = WINDOW_SECONDS * FRAMES_PER_SECOND * MEL_PER_FRAME  # 3000
MIN_FIT_SECONDS = 1.0  # a fitted window never encodes less than this


def fit_mel_frames(real_frames: int) -> int:
    """Log-mel frames to encode for `real_frames` kept encoder frames under audio.window=fit: even, <= 3000.

    Encoder frame j reads mel frames 2j-2 .. 2j+2 (two kernel-3 convolutions, the second with stride 2), so the
    kept frames' convolution outputs equal the full window's when mel frames 0 .. 2 * real_frames are present.
    """
    need = MEL_PER_FRAME * real_frames + 2
    floor = int(MIN_FIT_SECONDS * FRAMES_PER_SECOND) * MEL_PER_FRAME
    return min(WINDOW_MEL, max(need, floor))


def encode_mel(encoder: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """WhisperEncoder.forward on (B, mels, M) log-mel features of any even length M <= 3000 → (B, M / 2, D).

    transformers' forward raises unless M == 3000; this runs the same modules in the same order (conv1, GELU,
    conv2, GELU, + the first M / 2 learned positions, the layers, the final layer norm). Dropout and LayerDrop act
    only in training, and the frozen encoder is always in eval mode, so they are left out (checked).
    """
    assert not encoder.training, "encode_mel reproduces WhisperEncoder.forward in eval mode only"
    n_mel = feats.shape[-1]
    assert n_mel % MEL_PER_FRAME == 0 and n_mel <= WINDOW_MEL, n_mel
    x = nn.functional.gelu(encoder.conv1(feats))
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)  # (B, M / 2, D)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None)
    return encoder.layer_norm(x)


def pool_audio_frames(
    frames: torch.Tensor, tokens_per_second: float, max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder frames (F, D) at 50/s → tokens (N, D) and their centre times (N,) in seconds."""
    kernel = round(FRAMES_PER_SECOND / tokens_per_second)
    n_frames = frames.shape[0]
    n_tokens = math.ceil(n_frames / kernel)
    if n_tokens > max_tokens:  # long audio: pool harder rather than drop the end
        kernel = math.ceil(n_frames / max_tokens)
        n_tokens = math.ceil(n_frames / kernel)
    pad = n_tokens * kernel - n_frames
    if pad:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1)])
    tokens = frames.view(n_tokens, kernel, -1).mean(1)  # (N, D)
    starts = torch.arange(n_tokens, dtype=torch.float32) * kernel
    ends = torch.clamp(starts + kernel, max=n_frames)
    return tokens, (starts + ends) / 2 / FRAMES_PER_SECOND


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder (+ optional decoder for transcripts) behind a waveform-in interface."""

    def __init__(self, model: nn.Module, feature_extractor, tokenizer=None, cfg: AudioConfig | None = None):
        super().__init__()
        self.model = model  # WhisperForConditionalGeneration (or WhisperModel when there is no decoder use)
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.cfg = cfg or AudioConfig()
        self.feature_dim = model.config.d_model

    @property
    def encoder(self) -> nn.Module:
        return self.model.get_encoder()

    def _windows(self, wave: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        """Log-mel features of each 30 s window (W, mels, 3000) and the number of real encoder frames in each."""
        chunks = [wave[i : i + WINDOW_SAMPLES] for i in range(0, max(len(wave), 1), WINDOW_SAMPLES)]
        feats = self.feature_extractor(
            chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding="max_length"
        ).input_features
        real = [max(1, math.ceil(len(c) / SAMPLES_PER_FRAME)) for c in chunks]
        return feats, real

    def _encode(self, feats: torch.Tensor, real: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Groups of windows encoded together: (their whole log-mel windows (W, mels, 3000), encoder states
        (W, F, D)), F = 1500 for a full window or fewer for the fitted last one (audio.window)."""
        if self.cfg.window == "full":
            return [(feats, self.encoder(feats).last_hidden_state)]
        groups = []
        if len(real) > 1:  # the full windows of long audio, as they are
            groups.append((feats[:-1], encode_mel(self.encoder, feats[:-1])))
        last = fit_mel_frames(real[-1])
        groups.append((feats[-1:], encode_mel(self.encoder, feats[-1:, :, :last])))
        return groups

    @torch.no_grad()
    def forward(self, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Waveform (samples,) float32 16 kHz → tokens (N, D), times (N,), transcript ('' when disabled)."""
        assert wave.ndim == 1, wave.shape
        param = next(self.model.parameters())
        feats, real = self._windows(wave)
        groups = self._encode(feats.to(param.device, param.dtype), real)
        states = [s for _, group in groups for s in group]
        frames = torch.cat([s[:n] for s, n in zip(states, real, strict=True)])  # (F, D)
        tokens, times = pool_audio_frames(frames.float(), self.cfg.tokens_per_second, self.cfg.max_tokens)
        transcript = " ".join(self._speech_transcripts(groups)) if self.cfg.transcribe else ""
        return tokens, times, transcript

    def no_speech_probability(self, states: torch.Tensor) -> torch.Tensor:
        """Whisper's no-speech probability (W,) of windows from their encoder states (W, F, D): the weight of its
        no-speech token in the decoder's first prediction after <|startoftranscript|> (the token transformers'
        WhisperNoSpeechDetection reads, no_timestamps_token_id - 1). Beeps score ~0.9 on fitted states, read
        speech ~0.01-0.2."""
        gen = self.model.generation_config
        start = torch.full((states.shape[0], 1), gen.decoder_start_token_id, device=states.device)
        hidden = self.model.get_decoder()(input_ids=start, encoder_hidden_states=states).last_hidden_state
        logits = self.model.proj_out(hidden[:, -1]).float()  # (W, V)
        return logits.softmax(dim=-1)[:, gen.no_timestamps_token_id - 1]

    def _speech_transcripts(self, groups: list[tuple[torch.Tensor, torch.Tensor]]) -> list[str]:
        """The transcripts of the windows that hold speech (no-speech probability <= audio.no_speech_threshold);
        under audio.window=auto, a fitted window is encoded again in full first (the decoder loops on fitted
        states)."""
        texts = []
        for feats, states in groups:
            if self.cfg.no_speech_threshold < 1:
                speech = self.no_speech_probability(states) <= self.cfg.no_speech_threshold  # (W,)
                feats, states = feats[speech], states[speech]
            if feats.shape[0] == 0:
                continue
            if self.cfg.window == "auto" and states.shape[1] < WINDOW_MEL // MEL_PER_FRAME:
                states = self.encoder(feats).last_hidden_state
            texts += self._transcribe(feats, states)
        return texts

    def _transcribe(self, feats: torch.Tensor, states: torch.Tensor) -> list[str]:
        """The non-empty transcripts of windows (W, mels, M) from their encoder states (W, F, D).

        Whisper's generate takes the states as they are (the decoder cross-attends to any number of frames): with
        encoder_outputs given it does not run the encoder, and `feats` (padded to 3000 inside generate when
        shorter) only tells it the batch size and that this is short-form (one window each) transcription.
        """
        from transformers.modeling_outputs import BaseModelOutput
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # Whisper's generate warns about its own config on every call
        try:
            ids = self.model.generate(
                input_features=feats,
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                max_new_tokens=self.cfg.transcript_max_tokens,
            )
        finally:
            hf_logging.set_verbosity(level)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [t.strip() for t in texts if t.strip()]


def build_audio_encoder(cfg: AudioConfig) -> WhisperAudioEncoder | None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    if cfg.encoder == "none":
        return None
    if cfg.encoder == "tiny":
        config = WhisperConfig(
            d_model=cfg.hidden_size, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=2 * cfg.hidden_size, decoder_ffn_dim=2 * cfg.hidden_size,
            num_mel_bins=80, vocab_size=64, max_target_positions=32, pad_token_id=0, bos_token_id=1,
            eos_token_id=2, decoder_start_token_id=1,
        )  # fmt: skip
        return WhisperAudioEncoder(
            WhisperForConditionalGeneration(config).eval(), WhisperFeatureExtractor(), None, cfg
        )
    if cfg.encoder == "whisper":
        from transformers import AutoTokenizer

        path: Path = resolve_path(cfg.path)
        check_weights_dir(
            path,
            ["config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"],
            "run `make weights` (python -m solution.weights prepare pocket) to convert Whisper tiny.en, "
            "or point audio.path at a transformers Whisper folder",
        )
        model = WhisperForConditionalGeneration.from_pretrained(path).eval()
        return WhisperAudioEncoder(
            model, WhisperFeatureExtractor.from_pretrained(path), AutoTokenizer.from_pretrained(path), cfg
        )
    raise ValueError(f"unknown audio encoder {cfg.encoder!r}; valid: none, tiny, whisper")
