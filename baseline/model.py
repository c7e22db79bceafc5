"""The official baseline's method on the kit's components: frames → vision tower → spatial-temporal connector → LLM.

What the contest's baseline (VideoLLaMA2-7B) does, at the scale of a kit preset (the preset's own vision tower
and LLM, the same weights as the solution):
- 16 uniformly sampled frames (`BASELINE_FRAMES`), video only: no audio, no transcript, no visual tags, no
  co-attention fusion;
- a spatial-temporal connector after VideoLLaMA2's STC: each frame's feature grid average-pooled to
  `STC_POOL` x `STC_POOL`, a 3D convolution with kernel and stride 2 over (time, height, width), and an MLP
  into the LLM's hidden size. It is **untrained** (this kit has no baseline checkpoint): seeded random
  convolution and a zero last layer, so its tokens start at zero, like the solution's untrained projector;
- the prompt lists the options (A)..(E) (the kit's `prompt.chat_prompt`, with the video placeholders and
  "Audio: not available.");
- QA: one forward pass of prompt + option per option at batch size 1 (`heads.score_options_naive`), the
  option with the lowest length-normalised perplexity wins (no calibration);
- captions: greedy decoding without repetition penalty or n-gram blocking, capped at the config's
  generation.max_new_tokens (the official baseline allows 2048).

BaselineModel has the three calls the Runner makes (encode / prefix_embeds / answer), so `runner.run_tasks`
answers, journals, times and writes the outputs exactly as for the solution. It has no `answer_batch`: the
runner gives it one task at a time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from solution import heads
from solution.config import KitConfig, load_config
from solution.encoders.vision import build_vision_tower, preprocess_frames
from solution.llm import load_llm, placeholder_ids
from solution.media.video import Frames
from solution.model import Answer, Encoded, llm_autocast, pick_device
from solution.prompt import chat_prompt, option_texts
from solution.tasks import Task

BASELINE_FRAMES = 16
"""Frames per video, as the official baseline (decord, uniform)."""
STC_POOL = 4
"""Side of each frame's pooled feature grid before the 3D convolution."""
BASELINE_OVERRIDES = [
    f"media.num_frames={BASELINE_FRAMES}",
    "audio.encoder=none",
    "audio.transcribe=false",
    "vision.num_tags=0",
    "prompt.qa_calibration=false",
    "runtime.batch_size=1",
    "runtime.prefetch=0",
    "runtime.resume=false",
]
"""Applied on top of the preset (before the user's --set): video only, one task at a time, no resume (its
journal would otherwise look like a solution run's with the same settings)."""


def baseline_config(source: str = "pocket", overrides: list[str] | tuple[str, ...] = ()) -> KitConfig:
    """The preset's config with the baseline's settings (BASELINE_OVERRIDES), then the user's overrides."""
    return load_config(source, [*BASELINE_OVERRIDES, *overrides])


class STCConnector(nn.Module):
    """VideoLLaMA2-style spatial-temporal connector: (T, D, h, w) frame grids → (T/2 * (pool/2)^2, hidden) tokens."""

    def __init__(self, feature_dim: int, hidden: int, pool: int = STC_POOL):
        super().__init__()
        if pool % 2:
            raise ValueError(f"pool must be even, got {pool}")
        self.pool = pool
        self.conv = nn.Conv3d(feature_dim, feature_dim, kernel_size=2, stride=2)
        self.mlp = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        nn.init.zeros_(self.mlp[-1].weight)  # untrained: the video tokens start at zero (adds nothing)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """grid (T, D, h, w) → tokens (N, hidden), time-major."""
        x = F.adaptive_avg_pool2d(grid, self.pool)  # (T, D, pool, pool)
        if x.shape[0] % 2:  # an odd frame count: repeat the last frame
            x = torch.cat([x, x[-1:]], dim=0)
        x = self.conv(x.permute(1, 0, 2, 3)[None])[0]  # (D, T/2, pool/2, pool/2)
        return self.mlp(x.flatten(1).T)  # (T/2 * (pool/2)^2, hidden)


class BaselineModel(nn.Module):
    def __init__(self, cfg: KitConfig, vision, connector: STCConnector, llm, tokenizer):
        super().__init__()
        self.cfg = cfg
        self.vision = vision
        self.connector = connector
        self.llm = llm
        self.tokenizer = tokenizer
        self.video_id = placeholder_ids(tokenizer)["video"]

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    def autocast(self):
        return llm_autocast(self.device, self.cfg)  # the preset's CPU bf16 autocast, as the solution

    @torch.no_grad()
    def encode(self, frames: Frames | None, wave: np.ndarray | None) -> Encoded:
        """Video tokens from the frames (the audio is not used)."""
        out = Encoded()
        if frames is not None:
            vc = self.cfg.vision
            pixels = preprocess_frames(frames.pixels, vc.image_size, self.vision.mean, self.vision.std)
            grid, _ = self.vision(pixels.to(self.device))  # (T, D, h, w)
            tokens = self.connector(grid.float())  # (N, hidden)
            out.video = (tokens, torch.zeros(tokens.shape[0]))
        return out

    @torch.no_grad()
    def prefix_embeds(self, task: Task, encoded: Encoded) -> torch.Tensor:
        """The prompt's embeddings with the connector's tokens in place of the video placeholders: (1, P, H)."""
        n_video = 0 if encoded.video is None else encoded.video[0].shape[0]
        text = chat_prompt(self.tokenizer, task, n_video, 0, [], "", self.cfg.prompt)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(self.device)
        embed = self.llm.get_input_embeddings()
        feats = {} if encoded.video is None else {self.video_id: encoded.video[0].to(embed.weight.dtype)}
        return heads.merge_placeholders(ids, embed, feats)

    @torch.no_grad()
    def answer(self, task: Task, prefix: torch.Tensor) -> Answer:
        with self.autocast():
            if task.task_type == "qa":
                option_ids = [
                    self.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(task)
                ]
                scores = heads.score_options_naive(self.llm, prefix, option_ids)  # one forward per option
                ids = [c.choice_id for c in task.choices]
                return Answer(choice_id=heads.pick_option(scores, ids), scores=scores.tolist())
            caption = heads.generate_caption(
                self.llm, self.tokenizer, prefix, max_new_tokens=self.cfg.generation.max_new_tokens,
                num_beams=1, no_repeat_ngram_size=0, repetition_penalty=1.0,
            )  # fmt: skip
            return Answer(caption=caption)


def build_baseline(cfg: KitConfig) -> BaselineModel:
    """The baseline from a config (see baseline_config): the preset's vision tower and LLM, an untrained STC."""
    torch.manual_seed(cfg.runtime.seed)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    vision = build_vision_tower(cfg.vision).requires_grad_(False)
    llm, tokenizer = load_llm(cfg.llm, seed=cfg.runtime.seed)
    torch.manual_seed(cfg.runtime.seed)
    connector = STCConnector(vision.feature_dim, llm.config.get_text_config().hidden_size)
    return BaselineModel(cfg, vision, connector, llm, tokenizer).to(device).eval()
