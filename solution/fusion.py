"""Tri-modal fusion between the encoders and the LLM.

Each modality arrives as a `Stream` of tokens (video frames, audio windows, subtitle/question text). The fusion
projects every stream to a common width, adds a learned modality-type embedding, for timed streams a shared
sinusoidal encoding of the token's time in seconds (so a video token and an audio token of the same second carry the
same time signal) and, for video, a learned embedding of the token's cell in its frame's grid (so a token that
reads a frame learns where in the picture it looked, not only what it saw). Then either

- `TriModalCoAttention`: `depth` layers where every stream attends to itself and to each of the other two streams,
  with a per-head bias on the time between two timed tokens (`time_bias`: what sounds at a moment meets what is
  seen at that moment from the first step, instead of after the alignment has been learned from the time
  encoding), or
- `ConcatFusion`: no cross-modal interaction (VideoLLaMA2-AV style), each stream passed through on its own.

`Projector` maps the fused tokens to the LLM's hidden size (and, with `aligned_cells`, adds to each audio token the
video frame at its moment: `frames_at`); `event_tokens` pools the audio tokens of each sound event for the prompt's
list of sounds (audio.max_events), `EventPointer` picks the event a question names (fusion.event_pointer) and
`PlacePointer` says where in the frame at an event's moment its content is (fusion.event_place). A modality may be
absent from the dict or have N == 0 tokens; masked (padding) positions never influence real ones.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Stream:
    """The tokens of one modality for a batch."""

    tokens: Tensor  # (B, N, D_in)
    times: Tensor | None  # (B, N) seconds, None for text
    mask: Tensor  # (B, N) bool, True = real token
    cells: Tensor | None = None  # (B, N) long: each video token's cell in its frame's grid; None = no layout


def sinusoidal_time_encoding(
    times: Tensor, dim: int, min_period: float = 0.1, max_period: float = 1000.0
) -> Tensor:
    """Encode times in seconds as (B, N, dim) sines and cosines of periods geometric from min to max_period."""
    if dim % 2 != 0:
        raise ValueError(f"time encoding dim must be even, got {dim}")
    half = dim // 2
    exponents = torch.arange(half, device=times.device, dtype=torch.float32) / max(half - 1, 1)  # (dim/2,)
    periods = min_period * (max_period / min_period) ** exponents  # (dim/2,) seconds
    angles = times.float()[..., None] * (2 * math.pi / periods)  # (B, N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, N, dim)


class StreamEmbedding(nn.Module):
    """Per-modality standardisation + input projection + learned modality-type embedding + shared time encoding +
    learned grid-cell embedding (modalities in `grid_cells`: name → cells per frame).

    Frozen encoder features share a large common component (every clip's mean token is much the same); what tells
    clips apart is a small part of it. Each input dimension is therefore standardised with statistics of the
    training features (`set_input_statistics`, called by the trainer before the first step and saved with the
    fusion weights as buffers; identity until then), so the projection starts from the differences.
    """

    def __init__(self, input_dims: dict[str, int], dim: int, grid_cells: dict[str, int] | None = None):
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"fusion dim must be even (time encoding), got {dim}")
        self.input_dims = dict(input_dims)
        self.dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in input_dims.items()})
        self.type_embedding = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(dim)) for m in input_dims})
        # as large as the time encoding (RMS 0.7) from the start: cells are told apart before any training
        self.cell_embedding = nn.ParameterDict(
            {
                m: nn.Parameter(0.5 * torch.randn(n, dim))
                for m, n in (grid_cells or {}).items()
                if m in input_dims
            }
        )
        for m, d in input_dims.items():
            self.register_buffer(f"{m}_mean", torch.zeros(d))
            self.register_buffer(f"{m}_scale", torch.ones(d))  # 1 / std

    def set_input_statistics(self, modality: str, mean: Tensor, std: Tensor, eps: float = 1e-3) -> None:
        """Standardise `modality` from now on with these per-dimension statistics (D,) of its features."""
        width = self.input_dims[modality]
        if mean.shape != (width,) or std.shape != (width,):
            raise ValueError(f"{modality}: statistics must have shape ({width},), got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")  # fmt: skip
        getattr(self, f"{modality}_mean").copy_(mean)
        getattr(self, f"{modality}_scale").copy_(1 / (std + eps))

    def standardise(self, modality: str, tokens: Tensor) -> Tensor:
        """Encoder features (..., D_in) standardised per dimension (identity before set_input_statistics)."""
        return (tokens - getattr(self, f"{modality}_mean")) * getattr(self, f"{modality}_scale")

    def forward(self, streams: dict[str, Stream]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return the embedded tokens {m: (B, N, dim)} and boolean masks {m: (B, N)} of the given streams."""
        check_streams(streams, self.input_dims)
        x, masks = {}, {}
        for m, s in streams.items():
            h = self.proj[m](self.standardise(m, s.tokens)) + self.type_embedding[m]  # (B, N, dim)
            if s.times is not None:
                h = h + sinusoidal_time_encoding(s.times, self.dim).to(h.dtype)  # (B, N, dim)
            if s.cells is not None:
                if m not in self.cell_embedding:
                    raise ValueError(
                        f"{m} tokens have grid cells, but this fusion has no cell embedding for {m}"
                    )
                h = h + self.cell_embedding[m][s.cells].to(h.dtype)  # (B, N, dim)
            x[m] = h
            masks[m] = s.mask.bool()
        return x, masks


def check_streams(streams: dict[str, Stream], input_dims: dict[str, int]) -> None:
    """Raise ValueError on an unknown modality or on shapes that do not agree."""
    if not streams:
        raise ValueError("fusion needs at least one stream, got none")
    batch_sizes = set()
    for m, s in streams.items():
        if m not in input_dims:
            raise ValueError(f"unknown modality {m!r}; this fusion was built for {sorted(input_dims)}")
        B, N, width = s.tokens.shape
        if width != input_dims[m]:
            raise ValueError(f"{m} tokens have width {width}, expected {input_dims[m]}")
        if tuple(s.mask.shape) != (B, N):
            raise ValueError(f"{m} mask has shape {tuple(s.mask.shape)}, expected {(B, N)}")
        if s.times is not None and tuple(s.times.shape) != (B, N):
            raise ValueError(f"{m} times have shape {tuple(s.times.shape)}, expected {(B, N)}")
        if s.cells is not None and tuple(s.cells.shape) != (B, N):
            raise ValueError(f"{m} cells have shape {tuple(s.cells.shape)}, expected {(B, N)}")
        batch_sizes.add(B)
    if len(batch_sizes) != 1:
        raise ValueError(f"streams have different batch sizes {sorted(batch_sizes)}")


def time_slopes(heads: int) -> Tensor:
    """Initial per-head slopes (1/s) of the time bias: head 0 global (0), the others geometric, 16 / 4**k per
    second: the steepest favours tokens within ~0.1 s, the flattest within seconds."""
    return torch.tensor([0.0] + [16.0 / 4**k for k in range(heads - 1)])


def time_bias(
    slopes: Tensor, times: Tensor, timed: Tensor, context_times: Tensor, context_timed: Tensor
) -> Tensor:
    """Additive attention bias (B, h, L, M): -slope_h * |t_query - t_key| between timed tokens, 0 where either
    token has no time (text, the null token).

    slopes (h,); times (B, L) seconds with timed (B, L) bool; context_times (B, M) with context_timed (B, M).
    """
    distance = (times[:, :, None] - context_times[:, None, :]).abs()  # (B, L, M)
    distance = distance * (timed[:, :, None] & context_timed[:, None, :])  # (B, L, M)
    return -slopes.abs()[None, :, None, None] * distance[:, None]  # (B, h, L, M)


class Attention(nn.Module):
    """Multi-head attention of x (B, L, D) over context (B, M, D).

    `mask` is (B, L, M) or (B, 1, M) bool, True = may attend; callers guarantee each row has a True entry.
    `bias` (B, h, L, M), optional, is added to the attention logits.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor, bias: Tensor | None = None) -> Tensor:
        B, L, D = x.shape
        M = context.shape[1]
        assert context.shape[-1] == D and mask.shape[-1] == M
        q = self.query(x).view(B, L, self.heads, D // self.heads).transpose(1, 2)  # (B, h, L, d)
        kv = self.key_value(context).view(B, M, 2, self.heads, D // self.heads)  # (B, M, 2, h, d)
        k, v = kv.permute(2, 0, 3, 1, 4)  # (B, h, M, d) each
        dropout_p = self.dropout if self.training else 0.0
        mask = mask[:, None]  # (B, 1, L or 1, M), broadcast over heads
        if bias is not None:
            mask = bias.to(q.dtype).masked_fill(~mask, float("-inf"))  # (B, h, L, M)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, h, L, d)
        return self.out(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class MLP(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class CoAttentionBlock(nn.Module):
    """One modality's layer: self-attention, one cross-attention to each other stream (+ a null token), MLP.

    Each other stream has its own cross-attention, so a video frame competes with video frames for an audio token's
    attention, not with the question's words. Between two timed streams (and in a timed stream's self-attention)
    the attention logits get `time_bias` with learned per-head slopes (`time_slopes` at first): what sounds at a
    moment meets what is seen at that moment from the first step.
    """

    def __init__(self, dim: int, heads: int, context_timed: dict[str, bool], mlp_ratio: float = 4.0,
                 dropout: float = 0.0, timed: bool = True):  # fmt: skip
        super().__init__()
        self.self_attn_ln = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.timed = timed
        if timed:
            self.self_slopes = nn.Parameter(time_slopes(heads))
        self.cross_attn_ln = nn.LayerNorm(dim)
        self.context_ln = nn.ModuleDict({m: nn.LayerNorm(dim) for m in context_timed})
        self.null = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(dim)) for m in context_timed})
        self.cross_attn = nn.ModuleDict({m: Attention(dim, heads, dropout) for m in context_timed})
        self.cross_slopes = nn.ParameterDict(
            {
                m: nn.Parameter(time_slopes(heads))
                for m, other_timed in context_timed.items()
                if timed and other_timed
            }
        )
        self.mlp_ln = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, times: Tensor, context: dict[str, tuple[Tensor, Tensor, Tensor]]
                ) -> Tensor:  # fmt: skip
        """x (B, N, D) with mask and times (seconds) (B, N); context: other stream → its tokens (B, M, D), mask
        and times (B, M); M may be 0."""
        B, N, D = x.shape
        # self-attention over real tokens; each position also sees itself so padding rows stay finite
        eye = torch.eye(N, dtype=torch.bool, device=x.device)  # (N, N)
        self_mask = mask[:, None, :] | eye  # (B, N, N)
        timed = torch.ones_like(mask)
        bias = time_bias(self.self_slopes, times, timed, times, timed) if self.timed else None  # (B, h, N, N)
        h = self.self_attn_ln(x)
        x = x + self.resid_dropout(self.self_attn(h, h, self_mask, bias))  # (B, N, D)

        h = self.cross_attn_ln(x)
        update = torch.zeros_like(x)
        valid = torch.ones(B, 1, dtype=torch.bool, device=x.device)
        for m, (tokens, tokens_mask, tokens_times) in context.items():
            # an always-valid null token first, for "nothing relevant here"
            keys = torch.cat(
                [self.null[m].expand(B, 1, D), self.context_ln[m](tokens)], dim=1
            )  # (B, 1 + M, D)
            keys_mask = torch.cat([valid, tokens_mask], dim=1)  # (B, 1 + M)
            bias = None
            if m in self.cross_slopes:  # the null token has no time: bias 0
                bias = time_bias(
                    self.cross_slopes[m], times, timed, tokens_times, torch.ones_like(tokens_mask)
                )
                bias = F.pad(bias, (1, 0))  # (B, h, N, 1 + M)
            update = update + self.cross_attn[m](h, keys, keys_mask[:, None, :], bias)  # (B, N, D)
        x = x + self.resid_dropout(update)

        x = x + self.mlp(self.mlp_ln(x))  # (B, N, D)
        return x


class TriModalCoAttention(nn.Module):
    """Each stream attends within itself and to each other stream, `depth` times, all streams simultaneously."""

    def __init__(
        self,
        input_dims: dict[str, int],
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        grid_cells: dict[str, int] | None = None,
    ):
        super().__init__()
        self.modalities = list(input_dims)
        self.dim = dim
        self.embed = StreamEmbedding(input_dims, dim, grid_cells)
        timed = {m: m != "text" for m in self.modalities}
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    m: CoAttentionBlock(
                        dim,
                        heads,
                        {o: timed[o] for o in self.modalities if o != m},
                        mlp_ratio,
                        dropout,
                        timed[m],
                    )
                    for m in self.modalities
                }
            )  # fmt: skip
            for _ in range(depth)
        )
        self.ln_post = nn.ModuleDict({m: nn.LayerNorm(dim) for m in self.modalities})

    def forward(self, streams: dict[str, Stream]) -> dict[str, Tensor]:
        """Return the fused tokens {m: (B, N, dim)} of every stream given (padding positions hold junk)."""
        x, masks = self.embed(streams)
        times = {m: s.mask.new_zeros(s.mask.shape, dtype=torch.float32) if s.times is None else s.times.float()
                 for m, s in streams.items()}  # (B, N) seconds  # fmt: skip
        for layer in self.layers:
            new = {}
            for m in x:
                if x[m].shape[1] == 0:
                    new[m] = x[m]
                    continue
                context = {o: (x[o], masks[o], times[o]) for o in x if o != m}
                new[m] = layer[m](x[m], masks[m], times[m], context)  # (B, N, dim)
            x = new  # all streams read the previous layer's states
        return {m: self.ln_post[m](h) for m, h in x.items()}


class ConcatFusion(nn.Module):
    """No cross-modal interaction: embedded streams passed through, each with `depth` residual MLP blocks.

    Same constructor as TriModalCoAttention so the registry can swap them; `heads` is unused.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        dim: int,
        depth: int = 1,
        heads: int = 1,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        grid_cells: dict[str, int] | None = None,
    ):
        super().__init__()
        self.modalities = list(input_dims)
        self.dim = dim
        self.embed = StreamEmbedding(input_dims, dim, grid_cells)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {m: nn.Sequential(nn.LayerNorm(dim), MLP(dim, mlp_ratio, dropout)) for m in self.modalities}
            )
            for _ in range(depth)
        )
        self.ln_post = nn.ModuleDict({m: nn.LayerNorm(dim) for m in self.modalities})

    def forward(self, streams: dict[str, Stream]) -> dict[str, Tensor]:
        """Return the tokens {m: (B, N, dim)} of every stream given."""
        x, _ = self.embed(streams)
        for layer in self.layers:
            x = {m: h + layer[m](h) for m, h in x.items()}  # (B, N, dim)
        return {m: self.ln_post[m](h) for m, h in x.items()}


def frames_at(tokens: Tensor, times: Tensor, cells: int, moments: Tensor) -> Tensor:
    """The video frame at each moment: (M, cells * D), interpolated linearly between the two frames around it
    (the first or last frame outside their span).

    tokens (F * cells, D) in frame groups of `cells` tokens (pool_video_tokens' layout), times (F * cells,) in
    seconds, increasing from frame to frame; moments (M,) in seconds.
    """
    assert tokens.shape[0] % cells == 0 and tokens.shape[0] > 0, (tokens.shape, cells)
    frames = tokens.reshape(-1, cells * tokens.shape[-1])  # (F, cells * D)
    frame_times = times.reshape(-1, cells)[:, 0].float().contiguous()  # (F,)
    if frames.shape[0] == 1:
        return frames.expand(moments.shape[0], -1)
    t = moments.float().clamp(frame_times[0], frame_times[-1])  # (M,)
    after = torch.searchsorted(frame_times, t).clamp(1, frames.shape[0] - 1)  # (M,) first frame at or after t
    before = after - 1
    span = (frame_times[after] - frame_times[before]).clamp_min(1e-6)
    w = ((t - frame_times[before]) / span)[:, None].to(frames.dtype)  # (M, 1)
    return frames[before] * (1 - w) + frames[after] * w  # (M, cells * D)


def event_tokens(tokens: Tensor, times: Tensor, events: Tensor) -> Tensor:
    """One token per sound event: the mean of the tokens whose span meets the event (a token spans half the
    smallest spacing either side of its time), or of the nearest token when none does.

    tokens (M, H) with times (M,) in seconds, M > 0; events (K, 2) start and end seconds → (K, H).
    """
    assert tokens.shape[0] == times.shape[0] > 0 and events.shape[-1] == 2, (tokens.shape, events.shape)
    half = (times[1:] - times[:-1]).min() / 2 if times.shape[0] > 1 else float("inf")
    start, end = events[:, :1], events[:, 1:]  # (K, 1) each
    distance = (start - times[None]).clamp_min(0) + (times[None] - end).clamp_min(0)  # (K, M) token to event
    meets = distance <= half
    nearest = distance == distance.min(dim=1, keepdim=True).values
    weights = torch.where(meets.any(dim=1, keepdim=True), meets, nearest).to(tokens.dtype)  # (K, M)
    return weights @ tokens / weights.sum(dim=1, keepdim=True)  # (K, H)


class Projector(nn.Module):
    """Fused tokens (and their modality's standardised encoder features) → the LLM's hidden size.

    Two paths, summed per token: a 2-layer GELU MLP of the fused token (what the stream learned from the other
    modalities), and a linear read-out of the token's own standardised encoder features, a residual connection
    around the fusion. Without it the clip's evidence reaches the LLM only through the freshly initialised fusion
    layers, and a few hundred training examples did not teach the LLM to read it (colour and pitch questions stayed
    at chance); with it they are learned from the first steps. Both output layers are zero-initialised by
    default: an untrained projector adds nothing to the prompt (the trainer draws them afresh, see
    train.projector_init).

    With `aligned_cells` (> 0, and video and audio in `input_dims`), a third path for audio tokens
    (`aligned_frames`): a linear read-out of the standardised video frame at the token's moment (its
    `aligned_cells` cells side by side), scaled by a gate computed from the token's own sound. A silent moment then
    adds little, a sound adds what was on screen when it was heard, and a question about "the moment of the beep"
    is answered by the tokens the LLM already reads for the sound: through the co-attention alone, the LLM did not
    learn it (bench/LEARNING.md). Zero-initialised with the other output layers.

    With `event_names` (K_max, H), an `EventPointer` (`pointer`) that picks the listed sound event a question asks
    about; with `event_place` and the time-aligned path, a `PlacePointer` (`place`) for the sound events' frames.
    """

    def __init__(
        self,
        dim: int,
        hidden_size: int,
        input_dims: dict[str, int] | None = None,
        zero_init: bool = True,
        aligned_cells: int = 0,
        event_names: Tensor | None = None,
        event_place: bool = False,
    ):
        super().__init__()
        input_dims = input_dims or {}
        self.fc = nn.Linear(dim, hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.read_out = nn.ModuleDict({m: nn.Linear(d, hidden_size) for m, d in input_dims.items()})
        self.aligned_cells = aligned_cells if {"video", "audio"} <= input_dims.keys() else 0
        if self.aligned_cells:
            self.aligned = nn.Linear(self.aligned_cells * input_dims["video"], hidden_size)
            self.gate = nn.Linear(input_dims["audio"], 1)
        if zero_init:
            for layer in (
                self.proj,
                *self.read_out.values(),
                *([self.aligned] if self.aligned_cells else []),
            ):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.pointer = None if event_names is None else EventPointer(event_names)
        self.place = None
        if event_place and self.aligned_cells:
            self.place = PlacePointer(self.aligned_cells, input_dims["video"], hidden_size)

    def forward(self, fused: Tensor, modality: str | None = None, features: Tensor | None = None) -> Tensor:
        """fused (..., dim), and optionally the same tokens' standardised encoder features (..., D_in) of
        `modality` → (..., hidden_size)."""
        out = self.proj(F.gelu(self.fc(fused)))
        if features is not None:
            out = out + self.read_out[modality](features)
        return out

    def aligned_frames(self, sound: Tensor, frames: Tensor) -> Tensor:
        """sound (M, D_audio): audio tokens' standardised features; frames (M, aligned_cells * D_video): the
        standardised video frame at each one's moment (`frames_at`) → (M, hidden_size), added to those tokens."""
        assert self.aligned_cells, "this projector has no time-aligned path"
        return torch.sigmoid(self.gate(sound)) * self.aligned(frames)

    def event_frames(self, frames: Tensor) -> Tensor:
        """frames (K, aligned_cells * D_video): the standardised video frame at each sound event's middle →
        (K, hidden_size), added to the event tokens: the frame's cells summed, through the video tokens' own
        read-out, so what the LLM learned to name in a video token (a colour) it can name in a sound event. Summed,
        not averaged: an object filling one cell then reads as strongly as in its own video token (the mean
        divided it by the cell count; bench/LEARNING.md)."""
        assert self.aligned_cells, "this projector has no time-aligned path"
        return self.read_out["video"](frames.reshape(frames.shape[0], self.aligned_cells, -1).sum(dim=1))


class EventPointer(nn.Module):
    """The sound event a question is about ("when the second beep sounded"), as one more token for the prompt.

    The prompt's list names each event by an ordinal word ("Sounds: first <|sound|>; second <|sound|>."). The
    pointer scores each listed event by how well its name matches the question's best-matching word (cosine of
    their LLM input embeddings, times a learned scale), and returns the events' softmax-weighted sum. `names`
    (K_max, H) starts as the LLM's own embeddings of those ordinal words, so untrained it already points at the
    event the question names (and spreads over all of them when none is named); names and scale are trained with
    the fusion. Without it the LLM must find the asked event itself, a two-step lookup (the question's ordinal, then
    the token after the same word in the list) that the table's 250 steps did not teach (bench/LEARNING.md).
    """

    def __init__(self, names: Tensor, scale: float = 20.0):
        super().__init__()
        self.names = nn.Parameter(names.detach().clone().float())  # (K_max, H)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def weights(self, question: Tensor, n_events: int) -> Tensor:
        """question (T, H): the question's token embeddings (T may be 0) → (n_events,) weights summing to 1."""
        assert 0 < n_events <= self.names.shape[0], (n_events, self.names.shape)
        if question.shape[0] == 0:
            return self.names.new_full((n_events,), 1 / n_events)
        names = F.normalize(self.names[:n_events], dim=-1)  # (K, H)
        words = F.normalize(question.float(), dim=-1)  # (T, H)
        match = (words @ names.T).max(dim=0).values  # (K,): each name's best-matching word
        return torch.softmax(self.log_scale.exp() * match, dim=0)

    def forward(self, question: Tensor, events: Tensor) -> Tensor:
        """question (T, H), events (K, H) in the LLM's space → the asked event (H,)."""
        return self.weights(question, events.shape[0]).to(events.dtype) @ events


class PlacePointer(nn.Module):
    """Where in a frame its salient content is, as one vector in the LLM's space: a softmax over the frame's cells
    of a score that every cell shares, weighting one learned vector per cell.

    The event tokens' other picture path (`Projector.event_frames`) sums the cells, so it says what was on screen,
    not where; the time-aligned path reads the cells side by side through one linear layer, so "blue on the left"
    is a pattern of its own, and a pair never seen in training was answered from the colour (bench/LEARNING.md).
    Here a colour learned salient in one cell is salient in every cell. The vectors are centred, so equal weights
    (the zero-initialised score, before training) add nothing.
    """

    def __init__(self, cells: int, width: int, hidden_size: int):
        super().__init__()
        self.cells = cells
        self.score = nn.Linear(width, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.places = nn.Parameter(0.1 * torch.randn(cells, hidden_size))

    def weights(self, frames: Tensor) -> Tensor:
        """frames (M, cells * D) → (M, cells) weights summing to 1 per frame."""
        cells = frames.reshape(frames.shape[0], self.cells, -1)  # (M, cells, D)
        return torch.softmax(self.score(cells).squeeze(-1).float(), dim=-1)

    def forward(self, frames: Tensor) -> Tensor:
        """frames (M, cells * D): standardised video frames → (M, hidden_size)."""
        places = self.places - self.places.mean(dim=0)  # (cells, H)
        return self.weights(frames).to(places.dtype) @ places


FUSIONS = {"coattn": TriModalCoAttention, "concat": ConcatFusion}


def build_fusion(mode: str, **kwargs) -> nn.Module:
    """Build the fusion registered under `mode` with the given constructor arguments."""
    if mode not in FUSIONS:
        raise ValueError(f"unknown fusion mode {mode!r}; valid modes: {', '.join(sorted(FUSIONS))}")
    return FUSIONS[mode](**kwargs)
