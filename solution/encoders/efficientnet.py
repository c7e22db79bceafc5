"""EfficientNet-Lite0 (ImageNet) frame encoder built from the pocket weights folder.

The folder (``weights/efficientnet-lite0``, made by ``python -m solution.weights prepare pocket``) holds
``model.safetensors`` (the state dict of ``efficientnet_lite_pytorch.EfficientNet``), ``config.json`` (image
size 224, normalisation mean/std, feature dim 1280) and ``imagenet_classes.txt``. The model code comes from the
PyPI package ``efficientnet-lite-pytorch`` (installed by ``make weights`` with ``--no-deps``).

Input: RGB float in [0, 1], shape (N, 3, 224, 224), normalised with the config's mean/std: (x*255 - 127) / 128,
the TF EfficientNet-Lite preprocessing these weights were trained with (the package's demo text shows the
ImageNet mean/std, which gives visibly worse labels; see ``solution.weights``).
``model.extract_features(x)`` gives (N, 1280, 7, 7); ``model(x)`` gives (N, 1000) ImageNet logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from solution.errors import WeightsError

REQUIRED_FILES = ["config.json", "model.safetensors"]

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
"""TF EfficientNet-Lite preprocessing, (x*255 - 127) / 128: what these weights expect (see solution.weights)."""


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise WeightsError(
            "The model code package 'efficientnet-lite-pytorch' is not installed. Install it with `make weights`, "
            "or: pip install --no-deps efficientnet-lite-pytorch==0.1.0"
        ) from err
    return EfficientNet


def new_efficientnet_lite0(
    architecture: str = "efficientnet-lite0", num_classes: int = 1000
) -> torch.nn.Module:
    """A randomly initialised EfficientNet-Lite model from efficientnet_lite_pytorch (no weights)."""
    return _efficientnet_class().from_name(architecture, num_classes=num_classes)


def load_efficientnet_config(weights_dir: Path) -> dict[str, Any]:
    """The folder's config.json as a dict."""
    return json.loads((Path(weights_dir) / "config.json").read_text(encoding="utf-8"))


def build_efficientnet_lite0(weights_dir: Path, *, check: bool = True) -> torch.nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights from `weights_dir`, in eval mode, on CPU, float32.

    Raises WeightsError (listing the missing files and how to get them) when the folder is incomplete.
    """
    from safetensors.torch import load_file

    weights_dir = Path(weights_dir)
    if check:
        from solution.weights import HOW_TO_GET, check_weights_dir

        check_weights_dir(weights_dir, REQUIRED_FILES, HOW_TO_GET)
    config = load_efficientnet_config(weights_dir)
    model = new_efficientnet_lite0(
        config.get("architecture", "efficientnet-lite0"), config.get("num_classes", 1000)
    )
    state = load_file(str(weights_dir / "model.safetensors"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(
            f"{weights_dir / 'model.safetensors'} does not match {config.get('architecture')}: {err}"
        ) from err
    model.eval()
    return model
