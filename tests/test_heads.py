"""Tests of solution/heads.py on tiny random Llama and Qwen2 models (no download)."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from solution.heads import (
    generate_caption,
    merge_placeholders,
    pick_option,
    score_options,
    score_options_naive,
)

VOCAB = 300
HIDDEN = 64
TINY = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=VOCAB,
    initializer_range=0.2,  # peakier than the default so that scoring mistakes show
)
OPTIONS = [[5], [6, 7, 8], [9, 10], [11, 12, 13, 14, 15]]  # uneven lengths


def tiny_model(kind: str, attn_implementation: str = "sdpa") -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**TINY))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**TINY))
    model.set_attn_implementation(attn_implementation)
    return model.eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def prefix(length: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, length, HIDDEN, generator=torch.Generator().manual_seed(seed))


def test_merge_placeholders_replaces_in_order():
    embed = torch.nn.Embedding(10, 4)
    video_id, audio_id = 12, 5  # 12 is beyond the vocabulary (added token, embedding not resized)
    input_ids = torch.tensor([[1, 12, 12, 3, 5, 12, 2]])
    video, audio = torch.randn(3, 4), torch.randn(1, 4)
    out = merge_placeholders(input_ids, embed, {video_id: video, audio_id: audio})
    assert out.shape == (1, 7, 4)
    torch.testing.assert_close(out[0, [1, 2, 5]], video)
    torch.testing.assert_close(out[0, 4], audio[0])
    torch.testing.assert_close(out[0, [0, 3, 6]], embed(torch.tensor([1, 3, 2])))


def test_merge_placeholders_count_mismatch():
    embed = torch.nn.Embedding(10, 4)
    input_ids = torch.tensor([[1, 12, 12, 3]])
    with pytest.raises(ValueError, match="12") as err:
        merge_placeholders(input_ids, embed, {12: torch.randn(3, 4)})
    assert "2 positions" in str(err.value) and "3 feature rows" in str(err.value)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # the packed options' 4D mask: boolean / additive
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_cached_scoring_matches_naive(kind, attention):
    model = tiny_model(kind, attention)
    p = prefix()
    fast = score_options(model, p, OPTIONS)
    naive = score_options_naive(model, p, OPTIONS)
    assert fast.shape == (len(OPTIONS),) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, naive, atol=1e-4, rtol=0)
    assert naive.max() - naive.min() > 1e-2  # the options are really told apart
    torch.testing.assert_close(score_options(model, p, OPTIONS), fast, atol=0, rtol=0)  # no state kept


def test_scoring_is_mean_log_likelihood():
    model = tiny_model("llama")
    p = prefix()
    option = [7, 8, 9]
    embeds = torch.cat([p, model.get_input_embeddings()(torch.tensor([option]))], dim=1)
    with torch.no_grad():
        logprobs = model(inputs_embeds=embeds).logits[0].log_softmax(-1)
    P = p.shape[1]
    expected = torch.stack([logprobs[P - 1 + t, tok] for t, tok in enumerate(option)]).mean()
    torch.testing.assert_close(score_options(model, p, [option])[0], expected, atol=1e-5, rtol=0)


def test_scoring_rejects_empty_options():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="option 1 has no tokens"):
        score_options(model, prefix(), [[5], []])
    with pytest.raises(ValueError, match="no options"):
        score_options(model, prefix(), [])


def test_pick_option():
    assert pick_option(torch.tensor([-2.0, -0.5, -1.0]), [3, 7, 9]) == 7
    assert pick_option(torch.tensor([-1.0, -1.0]), [0, 1]) == 0
    with pytest.raises(ValueError, match="3 scores but 2"):
        pick_option(torch.tensor([-2.0, -0.5, -1.0]), [0, 1])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_caption(num_beams):
    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    p = prefix()
    caption = generate_caption(model, tokenizer, p, max_new_tokens=6, num_beams=num_beams)
    assert isinstance(caption, str)
    assert len(tokenizer(caption, add_special_tokens=False).input_ids) <= 6
    assert generate_caption(model, tokenizer, p, max_new_tokens=6, num_beams=num_beams) == caption
