"""LLM heads: merge features into the prompt, score multiple-choice options, generate captions.

They work on any Hugging Face causal LM (or a peft wrapper of one) whose forward takes `inputs_embeds`,
`attention_mask`, `past_key_values`, `use_cache` (and `logits_to_keep`, as every causal LM of transformers 5 does).
Call `model.eval()` first: dropout would make scores random.
"""

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def merge_placeholders(input_ids: Tensor, embed_tokens: nn.Embedding, features: dict[int, Tensor]) -> Tensor:
    """Embed input_ids (1, L), replacing the positions of each placeholder id by its feature rows, in order.

    `features` maps a placeholder token id to (N_k, H) rows; there must be exactly N_k positions with that id.
    Placeholder ids may lie beyond the embedding's vocabulary (added tokens, embedding not resized).
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, L), got {tuple(input_ids.shape)}")
    vocab_size = embed_tokens.num_embeddings
    embeds = embed_tokens(input_ids.clamp(0, vocab_size - 1))  # (1, L, H)
    for token_id, rows in features.items():
        positions = input_ids == token_id  # (1, L)
        n_positions, n_rows = int(positions.sum()), rows.shape[0]
        if n_positions != n_rows:
            raise ValueError(
                f"placeholder id {token_id}: {n_positions} positions in the prompt but {n_rows} feature rows"
            )
        assert rows.shape[-1] == embeds.shape[-1], (
            f"feature width {rows.shape[-1]} != hidden {embeds.shape[-1]}"
        )
        mask = positions[..., None].expand_as(embeds)  # (1, L, H)
        embeds = embeds.masked_scatter(mask, rows.to(embeds.dtype))  # (1, L, H)
    return embeds


def _check_options(prefix_embeds: Tensor, option_ids: list[list[int]]) -> None:
    if prefix_embeds.dim() != 3 or prefix_embeds.shape[0] != 1 or prefix_embeds.shape[1] == 0:
        raise ValueError(
            f"prefix_embeds must have shape (1, P, H) with P >= 1, got {tuple(prefix_embeds.shape)}"
        )
    if not option_ids:
        raise ValueError("no options to score")
    for i, ids in enumerate(option_ids):
        if len(ids) == 0:
            raise ValueError(f"option {i} has no tokens")


@torch.no_grad()
def score_options(model: nn.Module, prefix_embeds: Tensor, option_ids: list[list[int]]) -> Tensor:
    """Mean log-likelihood of each option's tokens after the prefix (1, P, H); returns (n_options,) float32.

    The prefix runs once; its options follow it packed into one row (`_option_pass`), each seeing only the
    prefix and itself. The highest score is the contest's lowest-perplexity option.
    """
    _check_options(prefix_embeds, option_ids)
    first_logprobs, cache = _prefix_pass(model, prefix_embeds)
    prefix_mask = torch.ones(prefix_embeds.shape[:2], dtype=torch.long, device=prefix_embeds.device)
    return _option_pass(model, first_logprobs, cache, prefix_mask, [option_ids])[0]


@torch.no_grad()
def score_option_lists(
    model: nn.Module, prefix_embeds: Tensor, option_lists: list[list[list[int]]]
) -> list[Tensor]:
    """[score_options(model, prefix_embeds, options) for options in option_lists], the prefix run once.

    Each list's option pass is computed with exactly the shapes it has alone (on a copy of the prefix's KV
    cache), so the scores are bitwise those of separate score_options calls: for the calibration of a
    batch of tasks after one shared neutral prompt.
    """
    for options in option_lists:
        _check_options(prefix_embeds, options)
    first_logprobs, cache = _prefix_pass(model, prefix_embeds)
    prefix_mask = torch.ones(prefix_embeds.shape[:2], dtype=torch.long, device=prefix_embeds.device)
    return [
        _option_pass(model, first_logprobs, copy.deepcopy(cache), prefix_mask, [options])[0]
        for options in option_lists
    ]


def _prefix_pass(model: nn.Module, prefix_embeds: Tensor):
    """The prefix's forward: log-probs of the next token (1, V) and the KV cache (batch 1)."""
    # the model makes a fresh DynamicCache (config-aware: sliding-window layers); the option pass grows it in place
    out = model(inputs_embeds=prefix_embeds, use_cache=True, logits_to_keep=1)
    first_logprobs = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (1, V): each option's 1st token
    return first_logprobs, out.past_key_values


def _attention_mask_4d(model: nn.Module, allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """A custom (B, 1, Q, K) attention mask from `allowed` (B, Q, K) bool, True = may attend: boolean for SDPA,
    additive (0 / dtype min) for eager attention, which adds the mask to its scores."""
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )[:, None]
    return allowed[:, None]


def _option_pass(model: nn.Module, first_logprobs: Tensor, cache, prefix_mask: Tensor,
                 option_lists: list[list[list[int]]]) -> list[Tensor]:  # fmt: skip
    """Score every option of every prefix row in one forward, without copying the KV cache per option.

    Row b of the cache (B rows, `prefix_mask` (B, P) 1 = real prefix position) gets the options of
    option_lists[b] packed one after another (right-padded to the longest row). A 4D attention mask lets each
    option token see the real positions of its own prefix and the earlier tokens of its own option only, and its
    position id continues the prefix (P_b, P_b + 1, ...), so every option is scored as if it followed the prefix
    alone. `first_logprobs` (B, V) are the prefix's last log-probs (each option's first token); the cache grows in
    place. Returns one (n_options_b,) float32 tensor of mean log-likelihoods per row.
    """
    B, P = prefix_mask.shape
    device = prefix_mask.device
    lengths = prefix_mask.sum(dim=1)  # (B,)
    L = max(sum(len(ids) for ids in options) for options in option_lists)
    ids = torch.zeros(B, L, dtype=torch.long, device=device)
    owner = torch.full((B, L), -1, dtype=torch.long, device=device)  # option index of each column, -1 = pad
    offset = torch.zeros(B, L, dtype=torch.long, device=device)  # token index within its option
    for b, options in enumerate(option_lists):
        column = 0
        for o, option in enumerate(options):
            n = len(option)
            ids[b, column : column + n] = torch.tensor(option, device=device)
            owner[b, column : column + n] = o
            offset[b, column : column + n] = torch.arange(n, device=device)
            column += n
    real = owner >= 0  # (B, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
    own_option = (owner[:, :, None] == owner[:, None, :]) & real[:, :, None] & causal  # (B, L, L)
    allowed = torch.cat([prefix_mask.bool()[:, None, :].expand(B, L, P), own_option], dim=2)  # (B, L, P + L)
    embeds = model.get_input_embeddings()(ids)  # (B, L, H)
    logits = model(inputs_embeds=embeds, attention_mask=_attention_mask_4d(model, allowed, embeds.dtype),
                   position_ids=lengths[:, None] + offset, past_key_values=cache, use_cache=True).logits  # fmt: skip

    # an option's first token is predicted by its prefix's last position, every other one by the column before it
    logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, L-1, V)
    after_previous = logprobs.gather(-1, ids[:, 1:, None])[..., 0]  # (B, L-1)
    after_prefix = first_logprobs.gather(-1, ids)  # (B, L)
    first_token = offset == 0
    token_logprobs = torch.where(first_token, after_prefix, F.pad(after_previous, (1, 0)))  # (B, L)
    token_logprobs = token_logprobs.masked_fill(~real, 0.0)
    scores = []
    for b, options in enumerate(option_lists):
        sums = torch.zeros(len(options), device=device)
        sums.index_add_(0, owner[b, real[b]], token_logprobs[b, real[b]])
        counts = torch.tensor([len(option) for option in options], device=device)
        scores.append(sums / counts)
    return scores


@torch.no_grad()
def score_options_naive(model: nn.Module, prefix_embeds: Tensor, option_ids: list[list[int]]) -> Tensor:
    """Reference for score_options: one full forward of prefix + option per option (as the official baseline)."""
    _check_options(prefix_embeds, option_ids)
    P = prefix_embeds.shape[1]
    scores = []
    for option in option_ids:
        ids = torch.tensor([option], device=prefix_embeds.device)  # (1, T)
        embeds = model.get_input_embeddings()(ids).to(prefix_embeds.dtype)  # (1, T, H)
        logits = model(inputs_embeds=torch.cat([prefix_embeds, embeds], dim=1)).logits  # (1, P+T, V)
        logprobs = F.log_softmax(logits[0, P - 1 : -1].float(), dim=-1)  # (T, V)
        scores.append(logprobs.gather(-1, ids[0, :, None]).mean())
    return torch.stack(scores)  # (n,)


def pick_option(scores: Tensor, choice_ids: list[int]) -> int:
    """Return the choice id of the highest-scoring option (ties: the first)."""
    if len(choice_ids) != scores.numel():
        raise ValueError(f"{scores.numel()} scores but {len(choice_ids)} choice ids")
    return choice_ids[int(scores.argmax())]


@torch.no_grad()
def generate_caption(
    model: nn.Module,
    tokenizer,
    prefix_embeds: Tensor,
    max_new_tokens: int,
    num_beams: int = 1,
    no_repeat_ngram_size: int = 3,
    repetition_penalty: float = 1.1,
) -> str:
    """Greedy (num_beams=1) or beam-search caption after the prefix (1, P, H), decoded and stripped.

    The text may be empty (the model produced only special tokens or whitespace): the caller chooses a fallback.
    """
    attention_mask = torch.ones(prefix_embeds.shape[:2], dtype=torch.long, device=prefix_embeds.device)
    new_ids = _generate(model, tokenizer, prefix_embeds, attention_mask, max_new_tokens=max_new_tokens,
                        num_beams=num_beams, no_repeat_ngram_size=no_repeat_ngram_size,
                        repetition_penalty=repetition_penalty)  # fmt: skip
    return tokenizer.decode(new_ids[0], skip_special_tokens=True).strip()


def _generate(model: nn.Module, tokenizer, embeds: Tensor, attention_mask: Tensor, **settings) -> Tensor:
    """Deterministic model.generate from input embeddings (B, P, H): the new token ids (B, T_new) only."""
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with warnings.catch_warnings():
        # from embeds alone the penalty and n-gram blocking see only the new tokens, which is what we want
        warnings.filterwarnings("ignore", message=r".*only to newly generated tokens.*")
        return model.generate(inputs_embeds=embeds, attention_mask=attention_mask, do_sample=False,
                              temperature=None, top_p=None, top_k=None, pad_token_id=pad_token_id,
                              **settings)  # fmt: skip


# -- batches of tasks ---------------------------------------------------------------------------------------------


def pad_prefixes(prefixes: list[Tensor], side: str) -> tuple[Tensor, Tensor]:
    """Stack prefixes (1, P_i, H) of different lengths into (B, P, H) with zero rows as padding on `side`
    ("left" or "right"), and the (B, P) attention mask (1 = real position, 0 = padding)."""
    if not prefixes:
        raise ValueError("no prefixes")
    for i, p in enumerate(prefixes):
        if p.dim() != 3 or p.shape[0] != 1 or p.shape[1] == 0:
            raise ValueError(f"prefix {i} must have shape (1, P, H) with P >= 1, got {tuple(p.shape)}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    first = prefixes[0]
    P = max(p.shape[1] for p in prefixes)
    embeds = first.new_zeros(len(prefixes), P, first.shape[-1])  # (B, P, H)
    mask = torch.zeros(len(prefixes), P, dtype=torch.long, device=first.device)
    for b, p in enumerate(prefixes):
        n = p.shape[1]
        cols = slice(P - n, P) if side == "left" else slice(0, n)
        embeds[b, cols] = p[0].to(embeds.dtype)
        mask[b, cols] = 1
    return embeds, mask


@torch.no_grad()
def score_options_batch(
    model: nn.Module, prefixes: list[Tensor], option_ids: list[list[list[int]]]
) -> list[Tensor]:
    """score_options for several tasks at once: task b's prefix (1, P_b, H) and its options option_ids[b].

    Returns one (n_options_b,) float32 tensor per task, equal to score_options(model, prefixes[b],
    option_ids[b]) within float rounding (`option_scores`). A single task goes through score_options itself.
    """
    if len(prefixes) == 1 and len(option_ids) == 1:
        return [score_options(model, prefixes[0], option_ids[0])]
    return option_scores(model, prefixes, option_ids)


def option_scores(
    model: nn.Module, prefixes: list[Tensor], option_ids: list[list[list[int]]]
) -> list[Tensor]:
    """Mean log-likelihood of each option of each task, differentiable (score_options_batch without no_grad:
    the trainer's loss uses it, so training scores options exactly as inference does). Two forwards in all:
      1. the prefixes (1, P_b, H), right-padded to the longest (B, P, H) with an attention mask, so that every
         real token sits at the column (and position) it has alone; each prefix's last real position gives the
         log-probs of its options' first tokens;
      2. each task's options packed into its own row after its cached prefix (`_option_pass`: the mask also
         hides the prefix padding between P_b and P, and positions continue each task's prefix).
    """
    if len(prefixes) != len(option_ids):
        raise ValueError(f"{len(prefixes)} prefixes but {len(option_ids)} option lists")
    for prefix, options in zip(prefixes, option_ids, strict=True):
        _check_options(prefix, options)
    embeds, prefix_mask = pad_prefixes(prefixes, "right")  # (B, P, H), (B, P)
    B, P = prefix_mask.shape
    positions = torch.arange(P, device=embeds.device).expand(B, P)
    last = (prefix_mask.sum(dim=1) - 1)[:, None]  # (B, 1): each prefix's last real column
    out = model(inputs_embeds=embeds, attention_mask=prefix_mask, position_ids=positions, use_cache=True,
                logits_to_keep=last)  # fmt: skip
    first_logprobs = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
    return _option_pass(model, first_logprobs, out.past_key_values, prefix_mask, option_ids)


@torch.no_grad()
def generate_captions(
    model: nn.Module,
    tokenizer,
    prefixes: list[Tensor],
    max_new_tokens: int,
    num_beams: int = 1,
    no_repeat_ngram_size: int = 3,
    repetition_penalty: float = 1.1,
) -> list[str]:
    """generate_caption for several prefixes (1, P_i, H) at once: one caption per prefix, in order.

    The prefixes are left-padded to the longest (zero rows, masked out), so that every row's next token is
    predicted at the last column; generate() derives each row's position ids from the attention mask
    (cumsum - 1), so real tokens keep the positions they have alone. Rows that finish early are filled with
    the pad token, which decoding drops. A single prefix goes through generate_caption itself.
    """
    if len(prefixes) == 1:
        return [generate_caption(model, tokenizer, prefixes[0], max_new_tokens, num_beams=num_beams,
                                 no_repeat_ngram_size=no_repeat_ngram_size,
                                 repetition_penalty=repetition_penalty)]  # fmt: skip
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    embeds, attention_mask = pad_prefixes(prefixes, "left")  # (B, P, H), (B, P)
    # generate() would skip each row's first <left padding> tokens when applying its own repetition penalty
    # (it assumes the prompt is in input_ids, which from inputs_embeds hold only new tokens): apply it ourselves,
    # over all new tokens, as for a single prefix
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    new_ids = _generate(model, tokenizer, embeds, attention_mask, max_new_tokens=max_new_tokens,
                        num_beams=num_beams, no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=1.0,
                        logits_processor=processors)  # (B, T_new)  # fmt: skip
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new_ids]
