"""Config loading: presets, YAML files, checkpoint folders, overrides, and errors that name the field."""

from pathlib import Path

import pytest
import yaml

from solution.config import KitConfig, available_presets, load_config, parse_override, resolve_path
from solution.encoders.vision import VISION_BUILDERS
from solution.errors import ConfigError
from solution.fusion import FUSIONS


@pytest.mark.parametrize("name", ["tiny", "pocket", "contest"])
def test_every_shipped_preset_loads_and_names_registered_components(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.vision.tower in VISION_BUILDERS
    assert cfg.fusion.mode in FUSIONS
    assert cfg.fusion.dim % cfg.fusion.heads == 0


def test_presets_listed():
    assert {"tiny", "pocket", "contest"} <= set(available_presets())


def test_overrides_parse_yaml_values():
    assert parse_override("fusion.depth=4") == {"fusion": {"depth": 4}}
    assert parse_override("audio.transcribe=false") == {"audio": {"transcribe": False}}
    cfg = load_config(
        "tiny", ["fusion.depth=3", "llm.lora_targets=[q_proj, v_proj]", "media.max_audio_seconds=5"]
    )
    assert cfg.fusion.depth == 3
    assert cfg.llm.lora_targets == ["q_proj", "v_proj"]
    assert cfg.media.max_audio_seconds == 5.0 and isinstance(cfg.media.max_audio_seconds, float)
    assert load_config("tiny", ["media.max_audio_seconds=1e1"]).media.max_audio_seconds == 10.0  # YAML: a str


@pytest.mark.parametrize(
    "override, message",
    [
        ("fusion.dpeth=3", "fusion: unknown field(s) ['dpeth']"),
        ("fusion.depth=x", "fusion.depth: expected int"),
        ("media.max_audio_seconds=long", "media.max_audio_seconds: expected float"),
        ("fusion.heads=3", "fusion.heads: must divide fusion.dim=32"),
        ("vision.tower=resnet", "vision.tower: expected one of tiny, efficientnet_lite0, clip"),
        ("vision.spatial_tokens=3", "vision.spatial_tokens: must be a square number"),
        ("audio.tokens_per_second=3", "audio.tokens_per_second: must divide 50"),
        ("audio.transcribe=true", "audio.transcribe"),
        ("runtime.keying=name", "runtime.keying"),
        ("nonsense", "expected section.field=value"),
    ],
)
def test_bad_fields_are_named(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config("tiny", [override])
    assert message in str(info.value)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: contest, pocket, tiny"):
        load_config("nope")


def test_yaml_file_and_checkpoint_folder_round_trip(tmp_path: Path):
    cfg = load_config("tiny", ["fusion.mode=concat"])
    cfg.fusion.weights = "fusion.safetensors"
    cfg.llm.adapter = "adapter"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cfg.save(ckpt / "config.yaml")
    back = load_config(ckpt)
    assert back.fusion.mode == "concat"
    assert Path(back.fusion.weights) == (ckpt / "fusion.safetensors").resolve()
    assert Path(back.llm.adapter) == (ckpt / "adapter").resolve()
    as_file = load_config(ckpt / "config.yaml")
    assert as_file.fusion.weights == "fusion.safetensors"  # a plain YAML file is not re-anchored
    assert yaml.safe_load((ckpt / "config.yaml").read_text())["fusion"]["mode"] == "concat"


def test_folder_without_config_is_rejected(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        load_config(tmp_path)


def test_relative_paths_resolve_against_kit_root():
    from solution import KIT_ROOT

    assert resolve_path("weights/x") == KIT_ROOT / "weights" / "x"
    assert resolve_path("/app/x") == Path("/app/x")


def test_defaults_are_valid():
    KitConfig()
