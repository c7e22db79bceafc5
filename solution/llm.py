"""The language model: loading (tiny random-init or a transformers folder), placeholder tokens, LoRA via peft.

The rest of the kit touches peft only through `attach_lora`, `save_adapter` and `load_adapter`.
Placeholder tokens (`<|video|>`, `<|audio|>`, and `<|sound|>` for a sound event) are added to the tokenizer as
special tokens; their ids are never looked up in the embedding table (the fused features replace them), so the
embedding is not resized.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import LLMConfig, resolve_path
from .weights import check_weights_dir

VIDEO_TOKEN = "<|video|>"
AUDIO_TOKEN = "<|audio|>"
SOUND_TOKEN = "<|sound|>"
PLACEHOLDERS = {"video": VIDEO_TOKEN, "audio": AUDIO_TOKEN, "events": SOUND_TOKEN}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level tokenizer built in code (256 byte symbols + specials): no files, any text round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))
    }  # a set: sort it
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def load_llm(cfg: LLMConfig, seed: int = 0) -> tuple[nn.Module, object]:
    """Build the causal LM and its tokenizer (with placeholder tokens added). LoRA is attached separately."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if cfg.kind == "tiny":
        tokenizer = tiny_tokenizer()
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
    else:
        path = resolve_path(cfg.path)
        check_weights_dir(
            path,
            ["config.json", "tokenizer_config.json"],
            "run `make weights` for the pocket LLM, or point llm.path at a transformers causal-LM folder",
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.dtype])
    tokenizer.add_special_tokens({"additional_special_tokens": list(PLACEHOLDERS.values())})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def placeholder_ids(tokenizer) -> dict[str, int]:
    """Modality name → the placeholder token's id."""
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in PLACEHOLDERS.items()}


def attach_lora(model: nn.Module, cfg: LLMConfig) -> nn.Module:
    """Wrap the LLM with fresh, trainable LoRA adapters (B initialised to zero: outputs unchanged)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM",
    )  # fmt: skip
    return get_peft_model(model, config)


def save_adapter(model: nn.Module, out_dir: Path) -> None:
    """Write a standard PEFT adapter folder (adapter_config.json + adapter_model.safetensors)."""
    model.save_pretrained(out_dir, safe_serialization=True)


def load_adapter(model: nn.Module, adapter_dir: Path, trainable: bool = False) -> nn.Module:
    """Wrap the LLM with the LoRA adapter stored in a PEFT adapter folder."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    check_weights_dir(
        adapter_dir,
        ["adapter_config.json", "adapter_model.safetensors"],
        "pass the adapter/ folder written by train_lora.py",
    )
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)
