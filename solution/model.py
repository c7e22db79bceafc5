"""The tri-modal model: encoders → tri-modal fusion → projector → LLM (with LoRA) → heads.

`build_model(cfg)` assembles it from named components. One task flows through three calls, which the runner
times separately:
    encoded = model.encode(frames, wave)          # frozen encoders: video tokens, audio tokens, tags, transcript
    prefix  = model.prefix_embeds(task, encoded)  # fusion + projector, merged into the prompt's embeddings
    answer  = model.answer(task, prefix)          # LLM heads: option ranking or caption generation
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import heads
from .config import ORDINALS, KitConfig, resolve_path
from .encoders.audio import build_audio_encoder
from .encoders.vision import build_vision_tower, pool_video_tokens, preprocess_frames, top_tags
from .errors import ConfigError, WeightsError
from .fusion import Projector, Stream, build_fusion, event_tokens, frames_at
from .llm import attach_lora, load_adapter, load_llm, placeholder_ids
from .media.audio import sound_events
from .media.video import Frames
from .prompt import chat_prompt, neutral_prompt, option_texts, text_stream
from .tasks import Task

FUSION_PREFIXES = ("fusion.", "projector.")


@dataclass
class Encoded:
    """What the frozen encoders extracted from one task's media."""

    video: tuple[torch.Tensor, torch.Tensor] | None = None  # tokens (N, Dv), times (N,) in seconds
    audio: tuple[torch.Tensor, torch.Tensor] | None = None  # tokens (M, Da), times (M,) in seconds
    tags: list[str] = field(default_factory=list)
    transcript: str = ""
    sound_events: list[tuple[float, float]] = field(default_factory=list)  # (start, end) s, in time order


@dataclass
class Answer:
    choice_id: int | None = None  # QA
    caption: str | None = None  # captioning
    scores: list[float] | None = None  # QA: mean log-likelihood per option


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "runtime.device: cuda was asked for but no CUDA device is available; use cpu or auto"
        )
    return torch.device(name)


def llm_autocast(device: torch.device, cfg: KitConfig):
    """bf16 autocast of the LLM on CPU when configured (fast bf16 units); a no-op elsewhere."""
    if device.type == "cpu" and cfg.runtime.cpu_bf16_autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TriModalModel(nn.Module):
    def __init__(
        self, cfg: KitConfig, vision, audio, fusion: nn.Module, projector: nn.Module, llm, tokenizer
    ):
        super().__init__()
        self.cfg = cfg
        self.vision = vision
        self.audio = audio
        self.fusion = fusion
        self.projector = projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.placeholders = placeholder_ids(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    def autocast(self):
        return llm_autocast(self.device, self.cfg)

    # -- encoders -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: Frames | None, wave: np.ndarray | None) -> Encoded:
        """Run the frozen encoders on whatever media the task has (either may be None)."""
        out = Encoded()
        # encoders run in their own dtype: bf16 autocast is for the LLM only
        if frames is not None:
            vc = self.cfg.vision
            pixels = preprocess_frames(frames.pixels, vc.image_size, self.vision.mean, self.vision.std)
            grid, label_logits = self.vision(pixels.to(self.device))  # (T, D, h, w), (T, L) | None
            times = torch.from_numpy(frames.timestamps).float()
            out.video = pool_video_tokens(grid.float().cpu(), times, vc.spatial_tokens, vc.temporal_stride)
            if label_logits is not None:
                out.tags = top_tags(label_logits, self.vision.labels, vc.num_tags)
        if wave is not None and self.audio is not None and len(wave) > 0:
            tokens, times, out.transcript = self.audio(wave)
            out.audio = (tokens.float().cpu(), times)
            out.sound_events = sound_events(wave, self.cfg.audio.max_events)
        return out

    # -- fusion and prompt ----------------------------------------------------------------------------------
    def listed_events(self, encoded: Encoded) -> list[tuple[float, float]] | None:
        """The sound events the prompt lists; None when it has no list (audio.max_events 0, or no audio)."""
        if not self.cfg.audio.max_events or encoded.audio is None:
            return None
        return encoded.sound_events[: self.cfg.audio.max_events]

    def prompt_ids(self, task: Task, encoded: Encoded) -> torch.Tensor:
        n_video = 0 if encoded.video is None else encoded.video[0].shape[0]
        n_audio = 0 if encoded.audio is None else encoded.audio[0].shape[0]
        events = self.listed_events(encoded)
        text = chat_prompt(
            self.tokenizer, task, n_video, n_audio, encoded.tags, encoded.transcript, self.cfg.prompt,
            None if events is None else len(events), self.projector.pointer is not None,
        )  # fmt: skip
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        return ids.to(self.device)  # (1, P)

    def fuse(self, task: Task, encoded: Encoded) -> dict[str, torch.Tensor]:
        """Fused tokens in the LLM's embedding space, per modality: {"video": (N, H), "audio": (M, H)}, and with a
        list of sound events {"events": (K, H)}."""
        embed = self.llm.get_input_embeddings()
        text_ids = self.tokenizer(
            text_stream(task, encoded.transcript), add_special_tokens=False, return_tensors="pt",
            truncation=True, max_length=self.cfg.fusion.max_text_tokens,
        ).input_ids.to(self.device)  # fmt: skip
        streams = {"text": Stream(embed(text_ids).float(), None, torch.ones_like(text_ids, dtype=torch.bool))}
        for name in ("video", "audio"):
            pair = getattr(encoded, name)
            if pair is not None:
                tokens, times = pair
                mask = torch.ones(1, tokens.shape[0], dtype=torch.bool, device=self.device)
                cells = None
                if name == "video":  # pool_video_tokens' layout: frame groups, each spatial_tokens cells
                    cells = (
                        torch.arange(tokens.shape[0], device=self.device)[None]
                        % self.cfg.vision.spatial_tokens
                    )
                streams[name] = Stream(tokens[None].to(self.device), times[None].to(self.device), mask, cells)
        fused = self.fusion(streams)  # name → (1, N, dim)
        out, features = {}, {}
        for name in ("video", "audio"):
            if name in streams:
                features[name] = self.fusion.embed.standardise(name, streams[name].tokens)[0]  # (N, D_in)
                out[name] = self.projector(fused[name], name, features[name][None])[0]  # (N, H)
        cells = self.projector.aligned_cells
        # the frame at each sound's moment; not at step-down level 2, whose frames have fewer cells
        aligned = bool(
            cells
            and len(features) == 2
            and cells == self.cfg.vision.spatial_tokens
            and len(features["video"])
        )
        if aligned:
            frames = frames_at(features["video"], streams["video"].times[0], cells, streams["audio"].times[0])
            out["audio"] = out["audio"] + self.projector.aligned_frames(features["audio"], frames)  # (M, H)
        events = self.listed_events(encoded)
        if events and len(out["audio"]):
            spans = torch.tensor(events, dtype=torch.float32, device=self.device)  # (K, 2) seconds
            out["events"] = event_tokens(out["audio"], streams["audio"].times[0], spans)  # (K, H)
            if aligned:
                frames = frames_at(features["video"], streams["video"].times[0], cells, spans.mean(dim=1))
                out["events"] = out["events"] + self.projector.event_frames(frames)  # (K, H)
                if self.projector.place is not None:
                    out["events"] = out["events"] + self.projector.place(frames).to(out["events"].dtype)
            if self.projector.pointer is not None:  # the event the question names, after the list
                ids = self.tokenizer(task.question.strip(), add_special_tokens=False).input_ids
                question = embed(torch.tensor(ids, dtype=torch.long, device=self.device))  # (T, H)
                asked = self.projector.pointer(question, out["events"])  # (H,)
                out["events"] = torch.cat([out["events"], asked[None]])  # (K + 1, H)
        return out

    def prefix_embeds(self, task: Task, encoded: Encoded) -> torch.Tensor:
        """The prompt's input embeddings with fused video/audio tokens in place of the placeholders: (1, P, H)."""
        ids = self.prompt_ids(task, encoded)
        with self.autocast():
            features = self.fuse(task, encoded)
            embed = self.llm.get_input_embeddings()
            feats = {self.placeholders[name]: f.to(embed.weight.dtype) for name, f in features.items()}
            return heads.merge_placeholders(ids, embed, feats)

    def neutral_prefix(self) -> torch.Tensor:
        """Embeddings of the task-free prompt used for PMI calibration: (1, P0, H)."""
        text = neutral_prompt(self.tokenizer, self.cfg.prompt)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(self.device)
        return self.llm.get_input_embeddings()(ids)

    # -- heads ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def answer(self, task: Task, prefix: torch.Tensor) -> Answer:
        with self.autocast():
            if task.task_type == "qa":
                option_ids = [
                    self.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(task)
                ]
                scores = heads.score_options(self.llm, prefix, option_ids)  # (n_options,)
                if self.cfg.prompt.qa_calibration:
                    scores = scores - heads.score_options(self.llm, self.neutral_prefix(), option_ids)
                ids = [c.choice_id for c in task.choices]
                return Answer(choice_id=heads.pick_option(scores, ids), scores=scores.tolist())
            g = self.cfg.generation
            caption = heads.generate_caption(
                self.llm, self.tokenizer, prefix, max_new_tokens=g.max_new_tokens, num_beams=g.num_beams,
                no_repeat_ngram_size=g.no_repeat_ngram_size, repetition_penalty=g.repetition_penalty,
            )  # fmt: skip
            return Answer(caption=caption)

    @torch.no_grad()
    def answer_batch(
        self, tasks: list[Task], prefixes: list[torch.Tensor], mode: str = "full"
    ) -> list[Answer]:
        """`answer` for several tasks at once, one Answer per task in order.

        mode "full": the QA tasks' prefixes go through one padded forward and their options through a second
        (heads.score_options_batch), the captioning tasks are generated together, left-padded
        (heads.generate_captions): the same answers as `answer` within float rounding.
        mode "exact": only what does not change a single number is shared (the calibration pass below); each
        QA prefix and each caption runs alone, so the answers are bitwise those of `answer` even where the
        rounding depends on the batch's shape (CPU bf16 kernels round differently for 1 and for B rows).
        In both modes the neutral prompt of the calibration runs once per batch: "full" scores the distinct
        options of all the QA tasks after it in one pass (heads.score_options), "exact" one task's options at a
        time on a copy of its KV cache (heads.score_option_lists).
        """
        if mode not in ("full", "exact"):
            raise ValueError(f"mode must be 'full' or 'exact', got {mode!r}")
        if len(tasks) != len(prefixes):
            raise ValueError(f"{len(tasks)} tasks but {len(prefixes)} prefixes")
        answers: list[Answer | None] = [None] * len(tasks)
        qa = [i for i, task in enumerate(tasks) if task.task_type == "qa"]
        captions = [i for i, task in enumerate(tasks) if task.task_type != "qa"]
        with self.autocast():
            if qa:
                option_ids = [
                    [self.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(tasks[i])]
                    for i in qa
                ]
                if mode == "full":
                    scores = heads.score_options_batch(self.llm, [prefixes[i] for i in qa], option_ids)
                else:
                    scores = [
                        heads.score_options(self.llm, prefixes[i], o)
                        for i, o in zip(qa, option_ids, strict=True)
                    ]
                if self.cfg.prompt.qa_calibration and mode == "full":
                    unique = list(dict.fromkeys(tuple(ids) for options in option_ids for ids in options))
                    neutral = heads.score_options(self.llm, self.neutral_prefix(), list(map(list, unique)))
                    prior = dict(zip(unique, neutral, strict=True))
                    scores = [s - torch.stack([prior[tuple(ids)] for ids in options])
                              for s, options in zip(scores, option_ids, strict=True)]  # fmt: skip
                elif self.cfg.prompt.qa_calibration:
                    parts = heads.score_option_lists(self.llm, self.neutral_prefix(), option_ids)
                    scores = [s - n for s, n in zip(scores, parts, strict=True)]
                for i, s in zip(qa, scores, strict=True):
                    ids = [c.choice_id for c in tasks[i].choices]
                    answers[i] = Answer(choice_id=heads.pick_option(s, ids), scores=s.tolist())
            if captions:
                g = self.cfg.generation
                settings = dict(max_new_tokens=g.max_new_tokens, num_beams=g.num_beams,
                                no_repeat_ngram_size=g.no_repeat_ngram_size,
                                repetition_penalty=g.repetition_penalty)  # fmt: skip
                if mode == "full":
                    texts = heads.generate_captions(
                        self.llm, self.tokenizer, [prefixes[i] for i in captions], **settings
                    )
                else:
                    texts = [heads.generate_caption(self.llm, self.tokenizer, prefixes[i], **settings)
                             for i in captions]  # fmt: skip
                for i, text in zip(captions, texts, strict=True):
                    answers[i] = Answer(caption=text)
        return answers  # type: ignore[return-value]

    # -- trained weights ------------------------------------------------------------------------------------
    def fusion_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(FUSION_PREFIXES)}

    def save_fusion(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.fusion_state_dict().items()}, str(path))

    def load_fusion(self, path: Path) -> None:
        if not Path(path).is_file():
            raise WeightsError(
                f"fusion weights {path} not found: pass the fusion.safetensors written by train_lora.py"
            )
        state = load_file(str(path))
        expected = set(self.fusion_state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise WeightsError(
                f"{path}: fusion weights do not match this config (missing {missing[:5]}, unexpected {extra[:5]}); "
                "use the config.yaml saved beside them"
            )
        self.load_state_dict(state, strict=False)


def ordinal_embeddings(llm: nn.Module, tokenizer, n: int) -> torch.Tensor:
    """The LLM's input embeddings of the words that name the first `n` sound events in the prompt's list (" first",
    " second", ...; a word of several tokens: their mean) → (n, H) float32."""
    weight = llm.get_input_embeddings().weight
    ids = [tokenizer(f" {word}", add_special_tokens=False).input_ids for word in ORDINALS[:n]]
    return torch.stack([weight[i].detach().float().mean(0) for i in ids])


def build_model(cfg: KitConfig, trainable: bool = False) -> TriModalModel:
    """Assemble the model from its config; load trained fusion weights and LoRA adapter when configured."""
    torch.manual_seed(cfg.runtime.seed)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    vision = build_vision_tower(cfg.vision)
    audio = build_audio_encoder(cfg.audio)
    llm, tokenizer = load_llm(cfg.llm, seed=cfg.runtime.seed)
    hidden = llm.config.get_text_config().hidden_size
    input_dims = {"video": vision.feature_dim, "text": hidden}
    if audio is not None:
        input_dims["audio"] = audio.feature_dim
    f = cfg.fusion
    torch.manual_seed(cfg.runtime.seed)
    fusion = build_fusion(
        f.mode,
        input_dims=input_dims,
        dim=f.dim,
        depth=f.depth,
        heads=f.heads,
        mlp_ratio=f.mlp_ratio,
        dropout=f.dropout,
        grid_cells={"video": cfg.vision.spatial_tokens},
    )
    aligned_cells = cfg.vision.spatial_tokens if f.time_aligned and f.mode == "coattn" else 0
    event_names = None
    if cfg.fusion.event_pointer and audio is not None:
        event_names = ordinal_embeddings(llm, tokenizer, cfg.audio.max_events)
    projector = Projector(f.dim, hidden, {k: v for k, v in input_dims.items() if k != "text"},
                          aligned_cells=aligned_cells, event_names=event_names, event_place=f.event_place)  # fmt: skip
    if cfg.llm.adapter:
        llm = load_adapter(llm, resolve_path(cfg.llm.adapter), trainable=trainable)
    elif trainable:
        llm = attach_lora(llm, cfg.llm)
    model = TriModalModel(cfg, vision, audio, fusion, projector, llm, tokenizer)
    if f.weights:
        model.load_fusion(resolve_path(f.weights))
    for module in (vision, audio):  # encoders stay frozen
        if module is not None:
            module.requires_grad_(False)
    return model.to(device).train(trainable)
