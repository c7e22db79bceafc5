"""Configuration: one dataclass per component, YAML presets, command-line overrides.

A config is built from a named preset (`solution/presets/<name>.yaml`), a YAML file, or a trained checkpoint
folder (its `config.yaml`), then `--set section.field=value` overrides are applied. Every field is documented
where it is declared; cross-field checks live in `__post_init__` and name the field they reject.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import KIT_ROOT
from .errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
CHECKPOINT_CONFIG = "config.yaml"


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _one_of(value: str, name: str, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, name, f"expected one of {', '.join(allowed)}, got {value!r}")


@dataclass
class MediaConfig:
    num_frames: int = 8
    """Frames sampled uniformly (segment centres) from each video."""
    max_side: int = 448
    """Frames are downscaled while decoding so that their longer side is at most this many pixels."""
    max_audio_seconds: float = 60.0
    """Audio beyond this many seconds is not processed."""

    def __post_init__(self) -> None:
        _check(self.num_frames >= 1, "media.num_frames", "must be >= 1")
        _check(self.max_side >= 32, "media.max_side", "must be >= 32")
        _check(self.max_audio_seconds > 0, "media.max_audio_seconds", "must be > 0")


VISION_TOWERS = ("tiny", "efficientnet_lite0", "clip")


@dataclass
class VisionConfig:
    tower: str = "tiny"
    """Registry name of the vision tower: tiny (random init), efficientnet_lite0, clip (CLIP/SigLIP folder)."""
    path: str = ""
    """Weights folder of the tower (relative paths are resolved against the kit root)."""
    image_size: int = 224
    """Side of the square crop fed to the tower."""
    spatial_tokens: int = 1
    """Tokens per frame after spatial average pooling: a square number (1, 4, 9, ...)."""
    temporal_stride: int = 1
    """Consecutive frames averaged into one video token group (1 = one group per frame)."""
    num_tags: int = 5
    """Zero-shot visual tags (labels that best match the frames) added to the text context; 0 disables."""
    hidden_size: int = 32
    """Feature width of the tiny tower (ignored by pretrained towers)."""

    def __post_init__(self) -> None:
        _one_of(self.tower, "vision.tower", VISION_TOWERS)
        side = round(self.spatial_tokens**0.5)
        _check(side * side == self.spatial_tokens, "vision.spatial_tokens", "must be a square number")
        _check(self.temporal_stride >= 1, "vision.temporal_stride", "must be >= 1")
        _check(self.num_tags >= 0, "vision.num_tags", "must be >= 0")


AUDIO_ENCODERS = ("none", "tiny", "whisper")
AUDIO_WINDOWS = ("auto", "fit", "full")
# the names of the sound events in the prompt
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


@dataclass
class AudioConfig:
    encoder: str = "tiny"
    """Registry name: none, tiny (random-init Whisper encoder), whisper (a transformers Whisper folder)."""
    path: str = ""
    """Weights folder of the Whisper model (encoder for audio tokens, decoder for the transcript)."""
    tokens_per_second: float = 2.0
    """Encoder frames (50 per second for Whisper) are average-pooled to this many tokens per second."""
    max_tokens: int = 64
    """Upper bound on audio tokens per task; longer audio is pooled harder."""
    transcribe: bool = False
    """Add the speech transcript to the text context (needs a real Whisper decoder)."""
    transcript_max_tokens: int = 96
    """Longest transcript generated per 30-second window."""
    hidden_size: int = 32
    """Width of the tiny encoder (ignored by real weights)."""
    window: str = "auto"
    """How much of each 30-second window the Whisper encoder runs on. full: the whole zero-padded window, as
    Whisper was trained; fit: only the frames covering real audio (at least 1 s; a 3 s clip encodes about 10x
    faster, but the audio tokens drift a little and the decoder often loops on the shortened states, so keep it
    off transcripts); auto: fit for the audio tokens, and a window that holds speech (see no_speech_threshold)
    is encoded again in full for its transcript. Long audio: every window but the last is full either way."""
    no_speech_threshold: float = 0.6
    """A window gets no transcript when Whisper's no-speech probability (its <|nocaptions|> token right after
    <|startoftranscript|>) is above this (Whisper's own default, 0.6): beeps, music and silence then add
    nothing to the prompt instead of a hallucinated "you". 1.0 transcribes every window."""
    max_events: int = 0
    """Sound events listed in the prompt after the audio tokens, in time order ("Sounds: first <|sound|>; second
    <|sound|>."): the stretches where the track is loud against its own quiet (`media.audio.sound_events`), at
    most this many. Each event is one token: the mean of its audio tokens and, with fusion.time_aligned, the
    video frame at its middle. So "the second beep" is found by the word "second", and "how many beeps" by the
    last ordinal, instead of by counting sounding audio tokens (which a few hundred training steps did not
    teach; bench/LEARNING.md). 0 = no list."""

    def __post_init__(self) -> None:
        _one_of(self.encoder, "audio.encoder", AUDIO_ENCODERS)
        _one_of(self.window, "audio.window", AUDIO_WINDOWS)
        _check(0 < self.tokens_per_second <= 50, "audio.tokens_per_second", "must be in (0, 50]")
        _check(
            50 % self.tokens_per_second == 0, "audio.tokens_per_second", "must divide 50 (Whisper frames/s)"
        )
        _check(self.max_tokens >= 1, "audio.max_tokens", "must be >= 1")
        _check(0 <= self.max_events <= len(ORDINALS), "audio.max_events", f"must be in [0, {len(ORDINALS)}]")
        _check(0 <= self.no_speech_threshold <= 1, "audio.no_speech_threshold", "must be in [0, 1]")
        _check(
            not (self.transcribe and self.encoder == "tiny"),
            "audio.transcribe",
            "the tiny encoder has no trained decoder; set audio.transcribe=false",
        )


FUSION_MODES = ("coattn", "concat")


@dataclass
class FusionConfig:
    mode: str = "coattn"
    """coattn: tri-modal co-attention (each stream attends to itself and the other two); concat: no interaction."""
    dim: int = 256
    """Width of the fusion layers."""
    depth: int = 2
    """Number of co-attention layers."""
    heads: int = 4
    """Attention heads; must divide dim."""
    mlp_ratio: float = 4.0
    """Hidden width of each layer's MLP relative to dim."""
    dropout: float = 0.0
    """Dropout inside fusion layers (training only)."""
    max_text_tokens: int = 128
    """Text tokens (question, options, transcript) fed to the fusion's text stream."""
    time_aligned: bool = True
    """coattn only (concat has no cross-modal path): each audio token also reads, through a linear layer gated by
    its own sound, the video frame at its moment (`Projector.aligned_frames`), so what is seen when a sound is
    heard reaches the LLM in the sound's token (the position at a beep: 26 of 43 dev questions after 150 steps,
    against chance without it; bench/LEARNING.md)."""
    event_pointer: bool = False
    """With audio.max_events' list: one more sound token after it, "The asked sound: <|sound|>.", the listed events
    weighted by how well each one's ordinal word matches a word of the question (`fusion.EventPointer`, trained with
    the fusion). So "the colour at the second beep" is read off one token, instead of the LLM finding the token
    after "second" in the list (bench/LEARNING.md)."""
    event_place: bool = False
    """With audio.max_events' list, coattn and time_aligned: each listed sound event also says where in the frame at
    its moment the salient content is (`fusion.PlacePointer`: a softmax over the frame's cells of one score shared
    by every cell, weighting a learned vector per cell). So "where was the square when the beep sounded" is read
    the same way for every colour, also in a cell where training never showed that colour (bench/LEARNING.md)."""
    weights: str = ""
    """Trained fusion + projector weights (safetensors, from train_lora.py); empty = freshly initialised."""

    def __post_init__(self) -> None:
        _one_of(self.mode, "fusion.mode", FUSION_MODES)
        _check(self.depth >= 0, "fusion.depth", "must be >= 0")
        _check(
            self.heads >= 1 and self.dim % self.heads == 0,
            "fusion.heads",
            f"must divide fusion.dim={self.dim}",
        )


LLM_KINDS = ("tiny", "hf")


@dataclass
class LLMConfig:
    kind: str = "tiny"
    """tiny: random-init Llama with a byte-level tokenizer (tests); hf: a transformers causal-LM folder."""
    path: str = ""
    """Weights folder for kind=hf (relative paths are resolved against the kit root)."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16."""
    adapter: str = ""
    """PEFT LoRA adapter folder to load (train_lora.py output); empty = base model."""
    lora_r: int = 16
    """LoRA rank used when training."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch while training."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that receive LoRA adapters."""
    hidden_size: int = 64
    """Tiny LLM only: hidden width."""
    num_layers: int = 2
    """Tiny LLM only: decoder layers."""

    def __post_init__(self) -> None:
        _one_of(self.kind, "llm.kind", LLM_KINDS)
        _one_of(self.dtype, "llm.dtype", ("float32", "bfloat16", "float16"))
        _check(self.kind != "hf" or bool(self.path), "llm.path", "required when llm.kind=hf")
        _check(self.lora_r >= 1, "llm.lora_r", "must be >= 1")


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 48
    """Caption length cap; contest METEOR rewards one or two detailed sentences, not 2048 tokens."""
    num_beams: int = 1
    """1 = greedy decoding."""
    no_repeat_ngram_size: int = 3
    """Forbid repeating any n-gram of this size (0 disables)."""
    repetition_penalty: float = 1.1
    """>1 discourages repeated tokens."""

    def __post_init__(self) -> None:
        _check(self.max_new_tokens >= 1, "generation.max_new_tokens", "must be >= 1")
        _check(self.num_beams >= 1, "generation.num_beams", "must be >= 1")


@dataclass
class PromptConfig:
    system: str = (
        "You are a careful assistant that watches a video, listens to its audio and answers questions "
        "about the people in it, their actions and emotions."
    )
    """System message of the chat prompt."""
    list_options: bool = True
    """Write a QA task's lettered options into the prompt. false: the prompt ends with the question and the options
    are only scored as continuations (about 40 fewer tokens per prompt on the synthetic benchmark, so faster
    training steps; the fusion's text stream still reads the options)."""
    question_first: bool = False
    """Put the question before the media instead of after them, so that the LLM reads every video token, audio
    token and sound event already knowing what is asked. The learning benchmark sets it: with it, and the event
    frames' cells summed, trimodal "both" on the 140-task held-out split went from 0.63-0.68 to 0.65-0.75 (two
    runs each; bench/LEARNING.md). Off by default: untrained, the chat-tuned LLM expects the question last."""
    qa_instruction: str = "Answer with the text of the correct option."
    """Last line of a QA prompt (also the neutral prompt used for PMI calibration)."""
    caption_instruction: str = (
        "Describe in one or two sentences who is in the video, what they do and what they say."
    )
    """Last line of a captioning prompt."""
    max_transcript_words: int = 120
    """Transcript words kept in the prompt (prompt length is the main CPU cost)."""
    qa_calibration: bool = True
    """Rank options by mean log-likelihood minus their mean log-likelihood after a neutral prompt (PMI), so that
    long, fluent options ("Not enough information to answer") are not favoured for their form; false = the
    contest's plain lowest-perplexity rule."""
    fallback_caption: str = "A person is shown in the video."
    """Caption written when a task cannot be answered by the model (never empty)."""

    def __post_init__(self) -> None:
        _check(bool(self.fallback_caption.strip()), "prompt.fallback_caption", "must not be empty")


@dataclass
class RuntimeConfig:
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu or cuda."""
    cpu_bf16_autocast: bool = False
    """Run the LLM under bfloat16 autocast on CPU. On a 2-core Zen 4 (AVX512-BF16) it made training steps 1.4x
    faster but inference slower (weights are cast at every call; batches must run in `exact` mode)."""
    keying: str = "task_id"
    """Output keys: task_id (str(task_id), the contest README) or position (index in the list, the baseline)."""
    seed: int = 0
    """Seed for random initialisation (tiny models, untrained fusion)."""
    threads: int = 0
    """torch CPU threads; 0 = torch's default."""
    time_budget_s: float = 3.5 * 3600 - 600
    """Wall-clock seconds the whole run may take (the contest's 3.5 h less a 10-minute margin). When the
    projected end passes it, the runner steps down to cheaper settings, then to fallback answers (see
    runner.LEVELS)."""
    resume: bool = True
    """Reuse the answers journalled in the output folder (journal.jsonl) by an earlier run on the same tasks
    file and config, e.g. one that was killed; false = start afresh."""
    media_roots: list[str] = field(default_factory=list)
    """Folders media may be read from besides the tasks file's own folder (relative: from the kit root)."""
    allow_any_media_path: bool = False
    """Read media wherever a record points (absolute paths, ../, symlinks out of the folder); false = media
    outside the tasks file's folder and media_roots are not read (an errors.json line says so)."""
    max_question_chars: int = 2000
    """Longer questions and option texts are cut in the middle (head and tail kept) before the prompt."""
    batch_size: int = 8
    """Tasks answered together by the LLM: tasks of one type (QA or captioning) at the same time-budget level,
    in file order within a short look-ahead (Runner.batches); 1 = one task at a time. A batch that fails is
    retried task by task."""
    batch_mode: str = "auto"
    """What a batch shares. full: the QA prompts run in one padded forward, the options of all tasks in a second,
    the captions are generated together (answers equal to batch_size=1 within float rounding); exact: only the
    calibration prompt is shared, each prompt and caption runs alone (answers bitwise those of batch_size=1);
    auto: exact where the LLM computes in 16 bits on CPU, under bf16 autocast or with llm.dtype bfloat16/float16
    (the kernels round differently for 1 and for B rows, which can change a greedy caption or a near-tie), full
    otherwise."""
    prefetch: int = 2
    """Background threads that decode the media of the next batch's tasks while the model computes; 0 = decode
    in the main thread when a task's turn comes."""
    compile: bool = False
    """torch.compile the LLM before the run (pays off on GPU for long runs; the first batches are slow)."""
    attn_implementation: str = "sdpa"
    """The LLM's attention kernel: sdpa (PyTorch scaled_dot_product_attention; flash kernels on GPU) or eager."""
    cuda_dtype: str = "bfloat16"
    """On CUDA, an LLM loaded in float32 runs in this dtype (bfloat16, float16 or float32 = as loaded)."""

    def __post_init__(self) -> None:
        _one_of(self.device, "runtime.device", ("auto", "cpu", "cuda"))
        _check(self.batch_size >= 1, "runtime.batch_size", "must be >= 1")
        _one_of(self.batch_mode, "runtime.batch_mode", ("auto", "full", "exact"))
        _check(self.prefetch >= 0, "runtime.prefetch", "must be >= 0 (0 = no background decoding)")
        _one_of(self.attn_implementation, "runtime.attn_implementation", ("sdpa", "eager"))
        _one_of(self.cuda_dtype, "runtime.cuda_dtype", ("bfloat16", "float16", "float32"))
        _one_of(self.keying, "runtime.keying", ("task_id", "position"))
        _check(self.time_budget_s > 0, "runtime.time_budget_s", "must be > 0 seconds")
        _check(self.max_question_chars >= 100, "runtime.max_question_chars", "must be >= 100")


@dataclass
class KitConfig:
    name: str = "custom"
    """Preset or file the config came from (informational)."""
    media: MediaConfig = field(default_factory=MediaConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        _check(
            not self.fusion.event_pointer or self.audio.max_events > 0,
            "fusion.event_pointer",
            "needs audio.max_events > 0 (the list of sound events it points into)",
        )
        _check(
            not self.fusion.event_place or self.audio.max_events > 0,
            "fusion.event_place",
            "needs audio.max_events > 0 (the list of sound events it places)",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        """Write the config as YAML (saved beside checkpoints so they can be rebuilt)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def resolve_path(path: str, base: Path = KIT_ROOT) -> Path:
    """A config path as an absolute Path: relative paths are taken from `base` (the kit root by default)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown fields and wrong types by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}: unknown field(s) {unknown}; valid: {sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint, where = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, value, f"{where}.")
        else:
            kwargs[name] = _coerce(value, hint, where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint)  # keys are read as text
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"{where}: union-typed config fields are not supported")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is bool and not isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def merge(base: dict, update: dict) -> dict:
    """`update` merged into a copy of `base`, nested mappings key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'fusion.depth=4' → {'fusion': {'depth': 4}}; the value is parsed as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected section.field=value, e.g. fusion.depth=4")
    value = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(source: str | Path = "pocket", overrides: list[str] | tuple[str, ...] = ()) -> KitConfig:
    """Build a KitConfig from a preset name, a YAML file or a checkpoint folder, then apply overrides.

    Relative weight paths inside a checkpoint's config.yaml are resolved against that checkpoint folder.
    """
    text_source = str(source)
    path = Path(text_source)
    checkpoint: Path | None = None
    if path.is_dir():
        checkpoint, path = path, path / CHECKPOINT_CONFIG
        if not path.is_file():
            raise ConfigError(f"{checkpoint}: not a checkpoint folder (no {CHECKPOINT_CONFIG} inside)")
    elif not path.suffix:
        path = PRESET_DIR / f"{text_source}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown preset {text_source!r}; valid presets: {', '.join(available_presets())}"
            )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", text_source if checkpoint is None else checkpoint.name)
    if checkpoint is not None:
        _anchor_checkpoint_paths(data, checkpoint)
    for override in overrides:
        data = merge(data, parse_override(override))
    return build_dataclass(KitConfig, data, "")


def _anchor_checkpoint_paths(data: dict, checkpoint: Path) -> None:
    """A checkpoint's own files (adapter, fusion weights) are named relative to the checkpoint folder."""
    for section, key in (("llm", "adapter"), ("fusion", "weights")):
        value = data.get(section, {}).get(key, "")
        if value and not Path(value).is_absolute():
            data[section][key] = str((checkpoint / value).resolve())
