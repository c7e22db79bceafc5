"""LLM heads: merge features into the prompt, score multiple-choice options, generate captions.

They work on any Hugging Face causal LM (or a peft wrapper of one) whose forward takes `inputs_embeds`,
`attention_mask`, `past_key_values`, `use_cache` (and `logits_to_keep`, as every causal LM of transformers 5 does).
Call `model.eval()` first: dropout would make scores random.
"""

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

    The prefix runs once; its KV cache is repeated for all options, scored together in one right-padded batch.
    The highest score is the contest's lowest-perplexity option.
    """
    _check_options(prefix_embeds, option_ids)
    n, P, device = len(option_ids), prefix_embeds.shape[1], prefix_embeds.device
    T = max(len(ids) for ids in option_ids)

    # the model makes a fresh DynamicCache (config-aware: sliding-window layers); the option pass grows it in place
    out = model(inputs_embeds=prefix_embeds, use_cache=True, logits_to_keep=1)
    first_logprobs = F.log_softmax(out.logits[0, -1].float(), dim=-1)  # (V,) predicts each option's 1st token
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)  # (1, ...) -> (n, ...) in every layer

    ids = torch.zeros(n, T, dtype=torch.long, device=device)  # right-padded with id 0
    real = torch.zeros(n, T, dtype=torch.bool, device=device)
    for i, option in enumerate(option_ids):
        ids[i, : len(option)] = torch.tensor(option, device=device)
        real[i, : len(option)] = True
    embeds = model.get_input_embeddings()(ids).to(prefix_embeds.dtype)  # (n, T, H)
    prefix_mask = torch.ones(n, P, dtype=torch.long, device=device)
    attention_mask = torch.cat([prefix_mask, real.long()], dim=1)  # (n, P+T)
    logits = model(
        inputs_embeds=embeds, attention_mask=attention_mask, past_key_values=cache, use_cache=True
    ).logits  # (n, T, V)

    # token t of an option is predicted by position t-1 of the option batch; token 0 by the prefix's last logits
    rest = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # (n, T-1)
    token_logprobs = torch.cat([first_logprobs[ids[:, :1]], rest], dim=1)  # (n, T)
    token_logprobs = token_logprobs.masked_fill(~real, 0.0)
    return token_logprobs.sum(dim=1) / real.sum(dim=1)  # (n,)


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
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with warnings.catch_warnings():
        # from embeds alone the penalty and n-gram blocking see only the new tokens, which is what we want
        warnings.filterwarnings("ignore", message=r".*only to newly generated tokens.*")
        new_ids = model.generate(
            inputs_embeds=prefix_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
            pad_token_id=pad_token_id,
        )  # (1, T_new): from inputs_embeds alone, generate returns only the new tokens
    return tokenizer.decode(new_ids[0], skip_special_tokens=True).strip()
