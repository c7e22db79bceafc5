"""Tri-modal (video + audio + text) question answering and captioning kit.

The pipeline, one module each: task record (`tasks`) → media loading (`media`) → encoders (`encoders`)
→ fusion (`fusion`) → LLM with LoRA (`llm`) → heads (`heads`) → output files (`outputs`), driven by `runner`.
"""

from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
"""The kit's root folder (holds run.py, weights/, ...); relative paths in presets are resolved against it."""
