"""Training checkpoints: a model folder that run.py loads, plus the trainer state that `--resume` continues from.

    DIR/checkpoint-<step>/
        adapter/                 PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
        fusion.safetensors       fusion + projector weights
        config.yaml              the config that built them (llm.adapter: adapter, fusion.weights: fusion.safetensors)
        trainer_state.pt         step, optimizer, scheduler, data order, best dev score (tensors and numbers only)
        rng_state_<rank>.pt      torch / CUDA / numpy / python RNG states of each process, as tensors
    DIR/best/                    a copy of the checkpoint with the best dev score, plus dev_metrics.json

Trainer state is read with `torch.load(weights_only=True)`: nothing in it needs unpickling of arbitrary objects.
A checkpoint is written into `checkpoint-<step>.tmp/` and renamed when complete, so a killed process leaves
either a complete checkpoint or a `.tmp` folder that resuming ignores.
"""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import KitConfig
from .errors import WeightsError
from .llm import save_adapter
from .model import TriModalModel

ADAPTER_DIR = "adapter"
FUSION_FILE = "fusion.safetensors"
CONFIG_FILE = "config.yaml"
STATE_FILE = "trainer_state.pt"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")


def rng_file(rank: int) -> str:
    return f"rng_state_{rank}.pt"


def save_model_files(model: TriModalModel, cfg: KitConfig, folder: Path) -> None:
    """adapter/ + fusion.safetensors + config.yaml (paths relative to the folder): a `--config` for run.py."""
    folder.mkdir(parents=True, exist_ok=True)
    save_adapter(model.llm, folder / ADAPTER_DIR)
    model.save_fusion(folder / FUSION_FILE)
    saved = dataclasses.replace(
        cfg,
        llm=dataclasses.replace(cfg.llm, adapter=ADAPTER_DIR),
        fusion=dataclasses.replace(cfg.fusion, weights=FUSION_FILE),
    )
    saved.save(folder / CONFIG_FILE)


def fresh_folder(path: Path) -> None:
    """An empty folder at `path` (whatever was there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def replace_folder(tmp: Path, final: Path) -> None:
    """Move a completely written folder into place (an older folder of that name is removed first)."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


# ---------------------------------------------------------------- RNG states as tensors


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and python RNG states, every one as tensors."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937", kind
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_cached_gaussian": torch.tensor(cached, dtype=torch.float64),
        "python_state": torch.tensor([version, *mt], dtype=torch.int64),
        "python_gauss": torch.tensor(float("nan") if gauss is None else gauss, dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    pos, has_gauss = (int(v) for v in state["numpy_pos"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_cached_gaussian"])))
    values = [int(v) for v in state["python_state"]]
    gauss = float(state["python_gauss"])
    random.setstate((values[0], tuple(values[1:]), None if np.isnan(gauss) else gauss))


# ---------------------------------------------------------------- trainer state


def save_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    torch.save(state, folder / STATE_FILE)


def load_state_file(path: Path) -> dict[str, Any]:
    """A trainer or RNG state file, loaded with weights_only=True; a WeightsError names an unusable file."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError) as exc:
        raise WeightsError(
            f"{path}: cannot read the trainer state ({exc}); resume from an earlier checkpoint"
        ) from exc


def complete_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in `out_dir`, by step."""
    found = []
    for folder in out_dir.glob("checkpoint-*"):
        match = CHECKPOINT_PATTERN.fullmatch(folder.name)
        if match and (folder / STATE_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Remove all but the `keep` latest complete checkpoints, and leftover `.tmp` folders."""
    for _, folder in complete_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(folder)
    for folder in out_dir.glob("checkpoint-*.tmp"):
        shutil.rmtree(folder, ignore_errors=True)
