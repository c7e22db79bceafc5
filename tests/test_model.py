"""The assembled tri-modal model on the tiny preset: token counts, placeholders, fusion modes, weights, LoRA."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from solution import heads
from solution.config import load_config
from solution.errors import ConfigError, WeightsError
from solution.fusion import event_tokens, frames_at
from solution.llm import attach_lora, load_adapter, save_adapter
from solution.media.audio import SAMPLE_RATE
from solution.media.video import Frames
from solution.model import Encoded, build_model
from solution.tasks import parse_task

QA = {
    "task_id": 7, "task_type": "qa", "question": "What colour is the square?", "video": "", "audio": "",
    "choices": [{"choice_id": i, "choice": c} for i, c in enumerate(["Red", "Blue", "Green", "Yellow", "Not sure"])],
}  # fmt: skip
CAPTION = {"task_id": 8, "task_type": "captioning", "question": "Describe this video in detail.", "video": "",
           "audio": "", "choices": []}  # fmt: skip


def media(seconds: float = 3.0, n_frames: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (n_frames, 72, 96, 3), dtype=np.uint8)
    times = (np.arange(n_frames, dtype=np.float32) + 0.5) * seconds / n_frames
    wave = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    return Frames(pixels, times, seconds), wave


def two_beeps() -> np.ndarray:
    """3 s of silence with two 1 kHz beeps, at 0.5-0.7 s and 2.0-2.2 s."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    beeping = ((t > 0.5) & (t < 0.7)) | ((t > 2.0) & (t < 2.2))
    return (0.5 * np.sin(2 * np.pi * 1000 * t) * beeping).astype(np.float32)


def randomise_projector(model, seed: int = 0):
    """The projector's last layer starts at zero; give it weights so fused features are visible in tests."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.projector.proj.weight, std=0.5)
    return model


@pytest.fixture()
def qa_task(tmp_path):
    return parse_task(QA, 0, tmp_path)


def test_token_counts_and_placeholders(tiny_model, tiny_cfg, qa_task):
    frames, wave = media()
    enc = tiny_model.encode(frames, wave)
    n_video = 2 * tiny_cfg.vision.spatial_tokens  # 4 frames, temporal stride 2, 4 tokens per frame
    assert enc.video[0].shape == (n_video, tiny_cfg.vision.hidden_size)
    assert enc.audio[0].shape == (6, tiny_cfg.audio.hidden_size)  # 3 s at 2 tokens/s
    assert torch.all(enc.audio[1] <= 3.0) and torch.all(enc.video[1] <= 3.0)
    ids = tiny_model.prompt_ids(qa_task, enc)
    ph = tiny_model.placeholders
    assert (ids == ph["video"]).sum().item() == n_video
    assert (ids == ph["audio"]).sum().item() == 6
    prefix = tiny_model.prefix_embeds(qa_task, enc)
    assert prefix.shape == (1, ids.shape[1], tiny_model.llm.config.hidden_size)


def test_unlisted_options_are_left_out_of_the_prompt_and_still_ranked(tiny_model, tiny_cfg, qa_task):
    enc = tiny_model.encode(*media())
    listed_ids = tiny_model.prompt_ids(qa_task, enc)
    model = copy.copy(tiny_model)  # the same modules, another config
    model.cfg = copy.deepcopy(tiny_cfg)
    model.cfg.prompt.list_options = False
    ids = model.prompt_ids(qa_task, enc)
    listed, unlisted = (model.tokenizer.decode(i[0]) for i in (listed_ids, ids))
    assert "Options:" in listed and "(A) Red" in listed
    assert "Options:" not in unlisted and "Yellow" not in unlisted and ids.shape[1] < listed_ids.shape[1]
    assert "What colour is the square?" in unlisted and tiny_cfg.prompt.qa_instruction in unlisted
    answer = model.answer(qa_task, model.prefix_embeds(qa_task, enc))
    assert answer.choice_id in range(5) and len(answer.scores) == 5


def test_question_first_moves_only_the_question(tiny_model, tiny_cfg, qa_task):
    enc = tiny_model.encode(*media())
    model = copy.copy(tiny_model)
    model.cfg = copy.deepcopy(tiny_cfg)
    model.cfg.prompt.question_first = True
    after, first = (m.tokenizer.decode(m.prompt_ids(qa_task, enc)[0]) for m in (tiny_model, model))
    question = "Question: What colour is the square?\n"
    assert after.index("Video:") < after.index(question) and first.index(question) < first.index("Video:")
    assert sorted(first.split("\n")) == sorted(after.split("\n"))  # the same lines, reordered
    answer = model.answer(qa_task, model.prefix_embeds(qa_task, enc))
    assert answer.choice_id in range(5) and len(answer.scores) == 5


def test_placeholder_mismatch_raises_with_both_counts(tiny_model, qa_task):
    enc = tiny_model.encode(*media())
    ids = tiny_model.prompt_ids(qa_task, enc)
    embed = tiny_model.llm.get_input_embeddings()
    wrong = {tiny_model.placeholders["video"]: torch.zeros(enc.video[0].shape[0] + 1, embed.weight.shape[1])}
    with pytest.raises(
        ValueError, match=rf"{enc.video[0].shape[0]} positions .* {enc.video[0].shape[0] + 1} feature rows"
    ):
        heads.merge_placeholders(ids, embed, wrong)


def test_missing_modalities_still_answer(tiny_model, qa_task, tmp_path):
    frames, wave = media()
    for enc in (
        tiny_model.encode(None, None),
        tiny_model.encode(frames, None),
        tiny_model.encode(None, wave),
    ):
        answer = tiny_model.answer(qa_task, tiny_model.prefix_embeds(qa_task, enc))
        assert answer.choice_id in range(5) and len(answer.scores) == 5
    caption_task = parse_task(CAPTION, 1, tmp_path)
    caption = tiny_model.answer(caption_task, tiny_model.prefix_embeds(caption_task, Encoded()))
    assert isinstance(caption.caption, str)


def test_cached_scoring_through_the_model_equals_naive(tiny_model, qa_task):
    model = randomise_projector(copy.deepcopy(tiny_model))
    enc = model.encode(*media())
    prefix = model.prefix_embeds(qa_task, enc)
    option_ids = [model.tokenizer(c.text, add_special_tokens=False).input_ids for c in qa_task.choices]
    cached = heads.score_options(model.llm, prefix, option_ids)
    naive = heads.score_options_naive(model.llm, prefix, option_ids)
    assert torch.allclose(cached, naive, atol=1e-4)


def test_coattention_mixes_modalities_and_concat_does_not(qa_task):
    frames, wave = media()
    t = np.arange(len(wave)) / SAMPLE_RATE
    other_wave = (0.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # a loud tone instead of faint noise
    video_rows = {}
    for mode in ("coattn", "concat"):
        model = randomise_projector(build_model(load_config("tiny", [f"fusion.mode={mode}"])))
        a = model.fuse(qa_task, model.encode(frames, wave))
        b = model.fuse(qa_task, model.encode(frames, other_wave))  # same video, different audio
        video_rows[mode] = (a["video"] - b["video"]).abs().max().item()
        assert not torch.allclose(a["audio"], b["audio"])
    assert video_rows["coattn"] > 1e-4, "co-attention: the audio must change the fused video tokens"
    assert video_rows["concat"] == 0.0, "concat: no interaction between modalities"


def test_audio_tokens_read_the_frame_at_their_moment(qa_task):
    frames, wave = media()
    model = build_model(load_config("tiny"))  # untrained: every output layer zero but the time-aligned one's
    torch.manual_seed(0)
    torch.nn.init.normal_(model.projector.aligned.weight, std=0.5)
    enc = model.encode(frames, wave)
    fused = model.fuse(qa_task, enc)
    assert torch.count_nonzero(fused["video"]) == 0
    standardise = model.fusion.embed.standardise
    sound, video = standardise("audio", enc.audio[0]), standardise("video", enc.video[0])
    at_moment = frames_at(video, enc.video[1], model.cfg.vision.spatial_tokens, enc.audio[1])
    torch.testing.assert_close(fused["audio"], model.projector.aligned_frames(sound, at_moment))
    assert torch.count_nonzero(fused["audio"]) > 0
    without_video = model.fuse(qa_task, Encoded(audio=enc.audio))
    assert torch.count_nonzero(without_video["audio"]) == 0
    for overrides in (["fusion.mode=concat"], ["fusion.time_aligned=false"]):  # no cross-modal path asked for
        assert build_model(load_config("tiny", overrides)).projector.aligned_cells == 0


def test_sound_events_are_listed_by_ordinal_and_read_the_frame_at_their_middle(qa_task):
    frames, _ = media()
    wave = two_beeps()
    model = randomise_projector(build_model(load_config("tiny", ["audio.max_events=8"])))
    torch.nn.init.normal_(model.projector.read_out["video"].weight, std=0.5)
    enc = model.encode(frames, wave)
    assert [(round(a, 2), round(b, 2)) for a, b in enc.sound_events] == [(0.5, 0.7), (2.0, 2.2)]
    ids = model.prompt_ids(qa_task, enc)
    assert "\nSounds: first <|sound|>; second <|sound|>.\n" in model.tokenizer.decode(ids[0])
    assert (ids == model.placeholders["events"]).sum() == 2
    fused = model.fuse(qa_task, enc)
    spans = torch.tensor(enc.sound_events)
    video = model.fusion.embed.standardise("video", enc.video[0])
    middle = frames_at(video, enc.video[1], model.cfg.vision.spatial_tokens, spans.mean(dim=1))
    expected = event_tokens(fused["audio"], enc.audio[1], spans) + model.projector.event_frames(middle)
    torch.testing.assert_close(fused["events"], expected)
    assert model.prefix_embeds(qa_task, enc).shape[1] == ids.shape[1]
    quiet = model.encode(frames, np.zeros_like(wave))
    assert "\nSounds: none.\n" in model.tokenizer.decode(model.prompt_ids(qa_task, quiet)[0])
    assert "events" not in model.fuse(qa_task, quiet)
    no_audio = model.tokenizer.decode(model.prompt_ids(qa_task, Encoded(video=enc.video))[0])
    assert "Sounds:" not in no_audio and "Audio: not available." in no_audio
    without_list = build_model(load_config("tiny"))  # audio.max_events 0
    assert "Sounds:" not in model.tokenizer.decode(without_list.prompt_ids(qa_task, enc)[0])


def test_each_sound_event_also_says_where_the_frame_at_its_middle_has_its_content(qa_task):
    frames, _ = media()
    wave = two_beeps()
    model = randomise_projector(
        build_model(load_config("tiny", ["audio.max_events=8", "fusion.event_place=true"]))
    )
    place = model.projector.place
    torch.nn.init.normal_(place.score.weight)  # as if trained: the cells weigh differently
    enc = model.encode(frames, wave)
    with_place = model.fuse(qa_task, enc)["events"]
    model.projector.place = None
    without = model.fuse(qa_task, enc)["events"]
    video = model.fusion.embed.standardise("video", enc.video[0])
    spans = torch.tensor(enc.sound_events)
    middle = frames_at(video, enc.video[1], model.cfg.vision.spatial_tokens, spans.mean(dim=1))
    torch.testing.assert_close(with_place - without, place(middle))
    assert torch.count_nonzero(place(middle)) > 0
    model.projector.place = place
    assert "projector.place.score.weight" in model.fusion_state_dict()  # saved with the fusion weights
    assert build_model(load_config("tiny", ["audio.max_events=8", "fusion.event_place=true",
                                            "fusion.mode=concat"])).projector.place is None  # fmt: skip
    with pytest.raises(ConfigError, match="fusion.event_place"):
        load_config("tiny", ["fusion.event_place=true"])  # no list of events


def test_the_asked_sound_event_follows_the_list(tmp_path):
    frames, _ = media()
    wave = two_beeps()
    question = "What colour was the square when the second beep sounded?"
    task = parse_task({**QA, "question": question}, 0, tmp_path)
    cfg = load_config("tiny", ["audio.max_events=8", "fusion.event_pointer=true"])
    model = randomise_projector(build_model(cfg))
    enc = model.encode(frames, wave)
    ids = model.prompt_ids(task, enc)
    listed = "\nSounds: first <|sound|>; second <|sound|>. The asked sound: <|sound|>.\n"
    assert listed in model.tokenizer.decode(ids[0])
    assert (ids == model.placeholders["events"]).sum() == 3
    fused = model.fuse(task, enc)
    word_ids = torch.tensor(model.tokenizer(question, add_special_tokens=False).input_ids)
    words = model.llm.get_input_embeddings()(word_ids)
    torch.testing.assert_close(fused["events"][2], model.projector.pointer(words, fused["events"][:2]))
    assert model.prefix_embeds(task, enc).shape[1] == ids.shape[1]
    assert "asked" not in model.tokenizer.decode(model.prompt_ids(task, model.encode(frames, 0 * wave))[0])
    assert "projector.pointer.names" in model.fusion_state_dict()  # saved with the fusion weights
    with pytest.raises(ConfigError, match="fusion.event_pointer"):
        load_config("tiny", ["fusion.event_pointer=true"])  # no list to point into


def test_untrained_projector_injects_zeros(tiny_model, qa_task):
    fused = tiny_model.fuse(qa_task, tiny_model.encode(*media()))
    assert all(torch.count_nonzero(f) == 0 for f in fused.values())


def test_fusion_weights_round_trip_and_mismatch(tmp_path, qa_task):
    model = randomise_projector(build_model(load_config("tiny")), seed=3)
    with torch.no_grad():  # move every fusion weight away from its seeded initial value
        for p in model.fusion.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "fusion.safetensors"
    model.save_fusion(path)
    reloaded = build_model(load_config("tiny", [f"fusion.weights={path}"]))
    assert torch.equal(reloaded.fusion_state_dict()["fusion.embed.proj.video.weight"],
                       model.fusion_state_dict()["fusion.embed.proj.video.weight"])  # fmt: skip
    enc = model.encode(*media())
    assert torch.equal(model.fuse(qa_task, enc)["video"], reloaded.fuse(qa_task, enc)["video"])
    with pytest.raises(WeightsError, match="do not match this config"):
        build_model(load_config("tiny", [f"fusion.weights={path}", "fusion.depth=2"]))
    with pytest.raises(WeightsError, match="not found"):
        build_model(load_config("tiny", [f"fusion.weights={tmp_path / 'nope.safetensors'}"]))


def test_lora_contract(tmp_path: Path, tiny_cfg):
    """Zero-init LoRA leaves logits unchanged; trained LoRA changes them; save → load, merge and unmerge agree."""
    from solution.llm import load_llm

    base, tokenizer = load_llm(tiny_cfg.llm, seed=0)
    ids = torch.tensor([tokenizer("a red square moves left").input_ids])
    with torch.no_grad():
        reference = base(ids).logits
    model = attach_lora(copy.deepcopy(base), tiny_cfg.llm).eval()  # peft returns it in train mode (dropout)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference, atol=1e-6)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
        adapted = model(ids).logits
    assert not torch.allclose(adapted, reference, atol=1e-3)
    save_adapter(model, tmp_path / "adapter")
    loaded = load_adapter(copy.deepcopy(base), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, adapted, atol=1e-5)
        loaded.merge_adapter()
        assert torch.allclose(loaded(ids).logits, adapted, atol=1e-4)
        loaded.unmerge_adapter()
        assert torch.allclose(loaded(ids).logits, adapted, atol=1e-5)
    with pytest.raises(WeightsError, match="adapter_config.json"):
        load_adapter(copy.deepcopy(base), tmp_path / "missing")


def test_caption_generation_is_deterministic(tiny_model, tmp_path):
    task = parse_task(CAPTION, 0, tmp_path)
    enc = tiny_model.encode(*media())
    prefix = tiny_model.prefix_embeds(task, enc)
    first = tiny_model.answer(task, prefix).caption
    assert first == tiny_model.answer(task, prefix).caption
    n_tokens = len(tiny_model.tokenizer(first, add_special_tokens=False).input_ids)
    assert n_tokens <= 2 * tiny_model.cfg.generation.max_new_tokens  # bytes may re-tokenise differently


def test_checkpoint_folder_rebuilds_the_trained_model(tmp_path: Path, qa_task):
    """A checkpoint (config.yaml + adapter/ + fusion.safetensors) loads through load_config(DIR) → build_model."""
    cfg = load_config("tiny")
    trained = randomise_projector(build_model(cfg, trainable=True), seed=4)
    with torch.no_grad():
        for name, p in trained.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.3)
    trained.eval()
    ckpt = tmp_path / "ckpt"
    save_adapter(trained.llm, ckpt / "adapter")
    trained.save_fusion(ckpt / "fusion.safetensors")
    cfg.llm.adapter, cfg.fusion.weights = "adapter", "fusion.safetensors"
    cfg.save(ckpt / "config.yaml")

    reloaded = build_model(load_config(ckpt))
    enc = trained.encode(*media())
    with torch.no_grad():
        expected = trained.answer(qa_task, trained.prefix_embeds(qa_task, enc)).scores
        got = reloaded.answer(qa_task, reloaded.prefix_embeds(qa_task, enc)).scores
    assert np.allclose(expected, got, atol=1e-5)
    base = build_model(load_config("tiny"))
    with torch.no_grad():
        untrained = base.answer(qa_task, base.prefix_embeds(qa_task, enc)).scores
    assert not np.allclose(expected, untrained, atol=1e-3)
