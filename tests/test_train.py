"""train_lora.py on the tiny preset and small synthetic splits: loss, batching, feature cache, checkpoints, resume,
inference from the trained folder, two-process data parallelism."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from solution import KIT_ROOT, heads
from solution import checkpoint as ckpt
from solution.config import load_config
from solution.errors import ConfigError, KitError
from solution.feature_cache import FeatureCache, load_entry, save_entry
from solution.model import FUSION_PREFIXES, Encoded, TriModalModel, build_model
from solution.prompt import option_texts
from solution.runner import Runner
from solution.splits import load_split, write_split
from solution.synthetic import make_synthetic_split
from solution.train import (
    AnswerLoss,
    Evaluator,
    TrainConfig,
    answer_ids,
    check_repeats,
    drop_modalities,
    load_examples,
    plan_step,
    split_overrides,
    train,
    train_config,
    trainable_names,
)

sys.path.insert(0, str(KIT_ROOT))
import run  # noqa: E402  (the contest entry point at the kit root)
import train_lora  # noqa: E402

TINY = ["runtime.threads=1"]
STEPS, EVAL_EVERY, BATCH = 6, 3, 4
FAST = TrainConfig(
    steps=STEPS, batch_size=BATCH, lr=1e-3, fusion_lr=1e-2, warmup_steps=2, eval_every=EVAL_EVERY
)


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    """A 12-task training split and a 6-task dev split of the synthetic benchmark (2-second clips)."""
    root = tmp_path_factory.mktemp("synth")
    make_synthetic_split(root / "train", n_tasks=12, clip_seconds=2.0)
    make_synthetic_split(root / "dev", n_tasks=6, clip_seconds=2.0, split="dev")
    make_synthetic_split(root / "four", n_tasks=4, clip_seconds=2.0, seed=1)
    return {name: root / name for name in ("train", "dev", "four")}


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory):
    """One 6-step run (2 epochs of the 12 tasks, dev evaluation every 3 steps), counting encoder calls."""
    root = tmp_path_factory.mktemp("run")
    calls = []
    original = TriModalModel.encode
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TriModalModel, "encode", lambda self, *a: calls.append(1) or original(self, *a))
        result = train(load_config("tiny", TINY), FAST, splits["train"], root / "out", splits["dev"],
                       cache_dir=root / "cache", progress=False)  # fmt: skip
    return {"result": result, "out": root / "out", "cache": root / "cache", "encoder_calls": len(calls)}


def one_task(split_dir: Path, kind: str):
    examples = load_examples(load_split(split_dir))
    return next(e for e in examples if e.task.task_type == kind)


# ---------------------------------------------------------------- pieces


def test_train_config_from_flags_and_overrides():
    kit, rest = split_overrides(["fusion.depth=2", "train.lr=0.01", "train.drop_audio=0"])
    assert kit == ["fusion.depth=2"] and rest == ["lr=0.01", "drop_audio=0"]
    cfg = train_config(rest, steps=7, batch_size=None)
    assert (cfg.lr, cfg.drop_audio, cfg.steps, cfg.batch_size) == (0.01, 0.0, 7, TrainConfig().batch_size)
    with pytest.raises(ConfigError, match=r"train: unknown field\(s\) \['lrr'\]"):
        train_config(["lrr=1"])
    with pytest.raises(ConfigError, match="train.drop_video"):
        train_config(drop_video=0.7, drop_audio=0.6)
    with pytest.raises(ConfigError, match="train.steps"):
        train_config(steps=0)
    both = train_config(["repeats={caption: 2}", "repeats.colour_at_beep=3"])  # merged, not replaced
    assert both.repeats == {"caption": 2, "colour_at_beep": 3}
    with pytest.raises(ConfigError, match="train.repeats: expected a mapping"):
        train_config(["repeats=3"])
    with pytest.raises(ConfigError, match="train.repeats.caption: must be >= 0, got -1"):
        train_config(["repeats.caption=-1"])
    with pytest.raises(ConfigError, match="train.repeats.caption: expected int"):
        train_config(["repeats.caption=many"])


def test_targets_are_the_inference_continuations(splits, tiny_model):
    qa, caption = one_task(splits["train"], "qa"), one_task(splits["train"], "captioning")
    label = next(r for r in load_split(splits["train"]).records if r["task_id"] == qa.task.task_id)
    position = [c.choice_id for c in qa.task.choices].index(label["correct_answer_choice_id"])
    assert qa.targets == (option_texts(qa.task)[position],)
    assert len(caption.targets) == 3  # the synthetic references
    tokenizer = tiny_model.tokenizer
    ids = answer_ids(tokenizer, qa.targets[0])
    assert ids[-1] == tokenizer.eos_token_id
    assert ids[:-1] == tokenizer(qa.targets[0], add_special_tokens=False).input_ids  # as heads.score_options


def test_plan_is_deterministic_and_visits_every_example_once_per_epoch(splits, tiny_model):
    examples = load_examples(load_split(splits["train"]))
    cfg = TrainConfig(batch_size=4, drop_video=0.3, drop_audio=0.3)
    plans = [plan_step(examples, tiny_model.tokenizer, cfg, seed=0, step=s) for s in range(6)]
    assert plans == [plan_step(examples, tiny_model.tokenizer, cfg, seed=0, step=s) for s in range(6)]
    visited = [p.example for plan in plans for p in plan]
    assert sorted(visited[:12]) == sorted(visited[12:]) == list(range(12))  # two epochs
    assert visited[:12] != visited[12:]  # reshuffled each epoch
    assert not any(p.drop_video and p.drop_audio for plan in plans for p in plan)
    always = TrainConfig(batch_size=4, drop_video=1.0, drop_audio=0.0)
    assert all(p.drop_video for p in plan_step(examples, tiny_model.tokenizer, always, seed=0, step=0))


def test_repeats_visit_a_groups_tasks_that_often_per_epoch(splits, tiny_model):
    examples = load_examples(load_split(splits["train"]), group_by="kind")
    assert Counter(e.group for e in examples)["caption"] == 2
    by_category = load_examples(load_split(splits["train"]))  # train.group_by's default
    assert {e.group for e in by_category} == {"video", "audio", "both"}
    cfg = TrainConfig(batch_size=1, group_by="kind", repeats={"caption": 3, "beep_count": 0})
    check_repeats(examples, cfg)
    epoch = len(examples) + 2 * 2 - 2  # the two captions thrice, the two counts never
    plans = [plan_step(examples, tiny_model.tokenizer, cfg, seed=0, step=s) for s in range(2 * epoch)]
    first, second = [p.example for (p,) in plans[:epoch]], [p.example for (p,) in plans[epoch:]]
    times = Counter(first)
    assert times == Counter(second) and first != second  # the same visits each epoch, reshuffled
    assert {times[i] for i, e in enumerate(examples) if e.group == "caption"} == {3}
    assert {times[i] for i, e in enumerate(examples) if e.group == "beep_count"} == {0}
    assert {times[i] for i, e in enumerate(examples) if e.group not in ("caption", "beep_count")} == {1}
    with pytest.raises(ConfigError, match=r"train.repeats: no training task has kind 'beeps' \(the training"):
        check_repeats(examples, TrainConfig(group_by="kind", repeats={"beeps": 2}))
    with pytest.raises(ConfigError, match="leaves no training task to visit"):
        check_repeats(by_category, TrainConfig(repeats=dict.fromkeys(("video", "audio", "both"), 0)))
    with pytest.raises(ConfigError, match="no training task has category 'caption'"):  # train() checks first
        train(load_config("tiny", TINY), TrainConfig(repeats={"caption": 2}), splits["train"], Path("unused"))


def test_modality_dropout_removes_the_modality_and_its_text():
    encoded = Encoded(
        (torch.ones(2, 3), torch.zeros(2)), (torch.ones(4, 3), torch.zeros(4)), ["cat"], "hello"
    )
    no_video = drop_modalities(encoded, True, False)
    assert no_video.video is None and no_video.tags == [] and no_video.audio is not None
    no_audio = drop_modalities(encoded, False, True)
    assert no_audio.audio is None and no_audio.transcript == "" and no_audio.tags == ["cat"]
    assert drop_modalities(encoded, False, False) is encoded


def test_training_losses_are_the_inference_option_scores(splits):
    """The answer loss is the summed next-token loss of the answer after the prompt (checked against one plain
    forward of prompt + answer), the ranking loss the cross-entropy of the scores inference ranks options by;
    in a batch, each example's losses are those it has alone."""
    model = build_model(load_config("tiny", TINY), trainable=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.projector.proj.weight, std=0.5)  # fused features visible in the prompt
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    qa, caption = one_task(splits["train"], "qa"), one_task(splits["train"], "captioning")
    cache = FeatureCache(model, model.cfg, directory=None)
    encoded = cache.get(qa.task)
    options = [model.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(qa.task)]
    prefix = model.prefix_embeds(qa.task, encoded)
    loss = AnswerLoss(model)
    with torch.no_grad():
        scores = heads.score_options(model.llm, prefix, options)
        for k, ids in enumerate(options):
            target = [*ids, model.tokenizer.eos_token_id]
            answer, ranking = loss([(qa.task, encoded, target, k)])
            plain = heads.score_options_naive(model.llm, prefix, [target])[0] * len(target)
            assert torch.allclose(answer, -plain, atol=1e-4)
            assert torch.allclose(ranking, F.cross_entropy(scores[None], torch.tensor([k])), atol=1e-4)
        caption_item = (
            caption.task,
            cache.get(caption.task),
            answer_ids(model.tokenizer, caption.targets[0]),
            None,
        )
        alone = [loss([caption_item]), loss([(qa.task, encoded, target, k)])]
        assert alone[0][1] == 0  # captions have no options to rank
        together = loss([caption_item, (qa.task, encoded, target, k)])
        unranked = AnswerLoss(model, rank=False)([(qa.task, encoded, target, k)])  # train.option_loss=0
    assert unranked[1] == 0 and torch.allclose(unranked[0], alone[1][0], atol=1e-4)
    for total, *parts in zip(together, *alone, strict=True):
        assert torch.allclose(total, sum(parts), atol=1e-4)


def test_only_lora_fusion_and_projector_train(tiny_cfg):
    model = build_model(tiny_cfg, trainable=True)
    names = trainable_names(model)
    assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
    assert any(n.startswith("fusion.") for n in names) and any(n.startswith("projector.") for n in names)
    assert all("lora_" in n or n.startswith(FUSION_PREFIXES) for n in names)
    assert not any(p.requires_grad for m in (model.vision, model.audio) for p in m.parameters())


def test_loss_decreases_on_a_tiny_overfit_set(splits, tmp_path):
    tcfg = TrainConfig(steps=30, batch_size=4, lr=1e-2, fusion_lr=1e-2, warmup_steps=0, eval_every=0,
                       drop_video=0.0, drop_audio=0.0)  # fmt: skip
    result = train(load_config("tiny", TINY), tcfg, splits["four"], tmp_path / "out", cache_dir=None,
                   progress=False)  # fmt: skip
    losses = [r["loss"] for r in result.records]
    # the tiny LLM's tied, frozen 64-wide embeddings bound its logits: the loss falls ~0.35 nats, then plateaus
    assert sum(losses[-5:]) / 5 < losses[0] - 0.2, losses
    assert (tmp_path / "out" / "best" / "fusion.safetensors").is_file()  # no dev split: best = the last model


# ---------------------------------------------------------------- one run, its files and its model


def test_run_writes_checkpoints_best_metrics_and_plot(trained):
    out = trained["out"]
    for folder in (out / f"checkpoint-{STEPS}", out / f"checkpoint-{EVAL_EVERY}", out / "best"):
        for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "fusion.safetensors",
                     "config.yaml"):  # fmt: skip
            assert (folder / name).is_file(), folder / name
        saved = load_config(folder)
        assert Path(saved.llm.adapter) == (folder / "adapter").resolve()
        assert Path(saved.fusion.weights) == (folder / "fusion.safetensors").resolve()
    assert (out / "best" / "trainer_state.pt").is_file()  # best/ is a copy of its checkpoint
    state = torch.load(out / f"checkpoint-{STEPS}" / "trainer_state.pt", weights_only=True)
    assert state["step"] == STEPS and set(state) >= {"optimizer", "scheduler", "data_order", "best_score"}
    rng = torch.load(out / f"checkpoint-{STEPS}" / "rng_state_0.pt", weights_only=True)
    assert set(rng) >= {"torch", "numpy_keys", "python_state"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all({"loss", "option_loss", "lr", "fusion_lr", "tokens"} <= set(r) for r in records)
    assert any(isinstance(r["option_loss"], float) for r in records)  # steps with QA examples rank options
    dev_steps = [r["step"] for r in records if "dev" in r]
    assert dev_steps == [EVAL_EVERY, STEPS]
    assert {"score", "accuracy", "meteor_contest_nltk_gamma0", "integral"} <= set(records[-1]["dev"])
    best = json.loads((out / "best" / "dev_metrics.json").read_text())
    assert best["step"] == trained["result"].best_step in dev_steps
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_reproduces_the_trained_model(trained, splits):
    trained_model = trained["result"].model.eval()
    reloaded = build_model(load_config(trained["out"] / f"checkpoint-{STEPS}"))
    untrained = build_model(load_config("tiny", TINY))
    example = one_task(splits["dev"], "qa")
    encoded = FeatureCache(trained_model, trained_model.cfg, directory=None).get(example.task)
    with torch.no_grad():
        logits = [m.llm(inputs_embeds=m.prefix_embeds(example.task, encoded)).logits
                  for m in (trained_model, reloaded, untrained)]  # fmt: skip
    assert torch.allclose(logits[1], logits[0], atol=1e-5)
    assert not torch.allclose(logits[2], logits[0], atol=1e-3)  # training changed the model


def test_feature_cache_serves_the_second_epoch_and_the_next_run(trained, splits, tmp_path):
    result = trained["result"]
    n_train, n_dev = 12, 6
    # every training clip is encoded before the first step (for the input statistics); the steps read memory
    assert result.feature_stats == {"encoder_runs": n_train, "disk_hits": 0, "memory_hits": STEPS * BATCH}
    dev_evaluations = STEPS // EVAL_EVERY  # the dev split goes through the Runner, which encodes itself
    assert trained["encoder_calls"] == n_train + n_dev * dev_evaluations
    entries = list(trained["cache"].rglob("*.json"))  # one per clip and modality
    assert len(entries) == 2 * n_train and len(list(trained["cache"].rglob("*.safetensors"))) == 2 * n_train
    again = train(load_config("tiny", TINY), TrainConfig(steps=3, batch_size=4, eval_every=0), splits["train"],
                  tmp_path / "out", cache_dir=trained["cache"], progress=False)  # fmt: skip
    assert again.feature_stats["encoder_runs"] == 0 and again.feature_stats["disk_hits"] == n_train
    changed = train(load_config("tiny", [*TINY, "media.num_frames=2"]), TrainConfig(steps=1, batch_size=4,
                    eval_every=0), splits["train"], tmp_path / "out2", cache_dir=trained["cache"],
                    progress=False)  # fmt: skip
    assert changed.feature_stats["encoder_runs"] == n_train  # another encoder config: other keys
    video_only = train(load_config("tiny", [*TINY, "audio.encoder=none", "audio.transcribe=false"]),
                       TrainConfig(steps=1, batch_size=4, eval_every=0), splits["train"], tmp_path / "out3",
                       cache_dir=trained["cache"], progress=False)  # fmt: skip
    assert video_only.feature_stats == {"encoder_runs": 0, "disk_hits": n_train, "memory_hits": 4}  # shared


def test_fusion_inputs_are_standardised_with_the_training_features(trained, splits):
    state = load_file(str(trained["out"] / "best" / "fusion.safetensors"))
    model = build_model(load_config("tiny", TINY))
    cache = FeatureCache(model, model.cfg, trained["cache"])
    examples = load_examples(load_split(splits["train"]))
    for modality in ("video", "audio"):
        tokens = torch.cat([getattr(cache.get(e.task), modality)[0] for e in examples])  # (N, D)
        assert torch.allclose(state[f"fusion.embed.{modality}_mean"], tokens.mean(0), atol=1e-5)
        assert torch.allclose(state[f"fusion.embed.{modality}_scale"], 1 / (tokens.std(0) + 1e-3), rtol=1e-3)
    built = build_model(load_config("tiny", TINY))  # as built for inference: identity statistics, zero output
    assert torch.equal(built.fusion.embed.video_mean, torch.zeros_like(built.fusion.embed.video_mean))
    assert not built.projector.proj.weight.any()
    assert not built.projector.read_out["video"].weight.any()
    for name in (
        "projector.proj.weight",
        "projector.read_out.video.weight",
        "projector.read_out.audio.weight",
    ):
        assert state[name].abs().sum() > 0  # train.projector_init=random


def test_best_folder_runs_with_run_py_and_scores_as_in_training(trained, splits, tmp_path):
    from solution import score

    out = tmp_path / "predictions"
    args = ["--input_path", str(splits["dev"] / "tasks.json"), "--output_dir", str(out),
            "--config", str(trained["out"] / "best"), "--no_progress"]  # fmt: skip
    assert run.main(args) == 0
    report = tmp_path / "report.json"
    assert score.main(["--labels", str(splits["dev"] / "labels.json"), "--predictions", str(out),
                       "--report", str(report), "--no-coco"]) == 0  # fmt: skip
    scored = json.loads(report.read_text())
    best = json.loads((trained["out"] / "best" / "dev_metrics.json").read_text())
    assert scored["qa"]["accuracy"] == best["accuracy"]
    assert scored["integral"]["score"] == pytest.approx(best["integral"])


def test_dev_evaluation_reads_linked_media_outside_the_split_folder(splits, tiny_model, tmp_path, capsys):
    source = load_split(splits["four"])
    linked = write_split(source.records, source.root, tmp_path / "linked", media_mode="link")
    assert (linked.root / linked.records[0]["video"]).is_symlink()
    cfg = load_config("tiny", TINY)
    guarded = Runner(tiny_model, cfg).run(linked.tasks, linked.root, progress=False)
    assert {t["source"] for t in guarded.tasks} == {"degraded"}  # run.py's guard: media outside, not read
    metrics = Evaluator(linked, cfg)(tiny_model)
    assert metrics["degraded"] == 0 and metrics["fallbacks"] == 0
    assert "warning" not in capsys.readouterr().err
    (splits["four"] / source.records[0]["video"]).rename(tmp_path / "moved.mp4")  # a broken link: warned
    try:
        assert Evaluator(linked, cfg)(tiny_model)["degraded"] == 1
        assert "warning: dev evaluation" in capsys.readouterr().err
    finally:
        (tmp_path / "moved.mp4").rename(splits["four"] / source.records[0]["video"])


def test_resume_after_a_kill_matches_the_uninterrupted_run(trained, splits, tmp_path):
    cfg, out = load_config("tiny", TINY), tmp_path / "out"
    killed = train(cfg, FAST, splits["train"], out, splits["dev"], stop_after=EVAL_EVERY + 1,
                   cache_dir=trained["cache"], progress=False)  # fmt: skip
    assert killed.step == EVAL_EVERY + 1 and not (out / f"checkpoint-{STEPS}").exists()
    (out / f"checkpoint-{STEPS + 99}.tmp").mkdir()  # a checkpoint the kill interrupted: ignored
    with pytest.raises(KitError, match="pass --resume"):
        train(cfg, FAST, splits["train"], out, splits["dev"], cache_dir=trained["cache"], progress=False)
    with pytest.raises(ConfigError, match=re.escape("train.repeats: checkpoint {}, now {'both': 2}")):
        train(
            cfg, TrainConfig(**{**FAST.__dict__, "repeats": {"both": 2}}), splits["train"], out, resume=True
        )
    with pytest.raises(ConfigError, match="train.lr: checkpoint 0.001, now 0.002"):
        train(
            cfg,
            TrainConfig(**{**FAST.__dict__, "lr": 2e-3}),
            splits["train"],
            out,
            resume=True,
            cache_dir=None,
        )
    # the checkpoint as written before train.repeats existed: its train config is read with the defaults
    state_file = out / f"checkpoint-{EVAL_EVERY}" / ckpt.STATE_FILE
    state = ckpt.load_state_file(state_file)
    for name in ("group_by", "repeats"):
        del state["train_config"][name]
    torch.save(state, state_file)
    resumed = train(cfg, FAST, splits["train"], out, splits["dev"], resume=True, cache_dir=trained["cache"],
                    progress=False)  # fmt: skip
    assert resumed.step == STEPS
    straight = trained["out"] / f"checkpoint-{STEPS}"
    for name in ("adapter/adapter_model.safetensors", "fusion.safetensors"):
        a, b = load_file(straight / name), load_file(out / f"checkpoint-{STEPS}" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    lines = [(out / "metrics.jsonl").read_text(), (trained["out"] / "metrics.jsonl").read_text()]
    strip = [
        [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in t.splitlines()] for t in lines
    ]
    for a, b in zip(*strip, strict=True):
        a.get("dev", {}).pop("seconds", None), b.get("dev", {}).pop("seconds", None)
    assert strip[0] == strip[1]  # the kill's extra line was dropped; every loss and dev metric is the same


def test_cli_reports_unusable_inputs(splits, tmp_path, capsys):
    args = [
        "--config",
        "tiny",
        "--train",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "o"),
        "--steps",
        "1",
    ]
    assert train_lora.main(args) == 2
    assert "missing" in capsys.readouterr().err
    args = ["--config", "tiny", "--train", str(splits["train"]), "--out", str(tmp_path / "o"),
            "--set", "train.batch_size=0"]  # fmt: skip
    assert train_lora.main(args) == 2
    assert "train.batch_size" in capsys.readouterr().err


# ---------------------------------------------------------------- data parallel


@pytest.mark.slow
def test_two_processes_with_torchrun_match_one_process(splits, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on CPU) gives the artefacts of one process with the same global batch.

    Equal to float rounding, not bitwise: the gradients are summed across processes in another order, and each
    process pads only its half of the batch. LoRA dropout is off: its masks are drawn per process, so with it the
    two runs would train on different masks (equal in distribution only).
    """
    overrides = [*TINY, "llm.lora_dropout=0"]
    common = ["--config", "tiny", "--train", str(splits["train"]), "--dev", str(splits["dev"]), "--steps", "4",
              "--batch_size", "4", "--eval_every", "2", "--lr", "1e-3", "--cache_dir", str(tmp_path / "cache"),
              "--no_progress"] + [x for o in overrides for x in ("--set", o)]  # fmt: skip
    assert train_lora.main([*common, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               str(KIT_ROOT / "train_lora.py"), *common, "--out", str(tmp_path / "two")]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = tmp_path / "one" / "checkpoint-4", tmp_path / "two" / "checkpoint-4"
    assert {p.name for p in two.iterdir()} == {p.name for p in one.iterdir()} | {"rng_state_1.pt"}
    for name in ("adapter/adapter_model.safetensors", "fusion.safetensors"):
        a, b = load_file(one / name), load_file(two / name)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    assert (one / "config.yaml").read_text() == (two / "config.yaml").read_text()
    records = [[json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
               for d in (tmp_path / "one", tmp_path / "two")]  # fmt: skip
    assert [r["loss"] for r in records[0]] == pytest.approx([r["loss"] for r in records[1]], abs=1e-5)
    assert [r["tokens"] for r in records[0]] == [r["tokens"] for r in records[1]]
    assert records[0][-1]["dev"]["accuracy"] == records[1][-1]["dev"]["accuracy"]


def test_feature_cache_entry_keeps_the_sound_events(tmp_path):
    audio = (torch.randn(3, 4), torch.tensor([0.1, 0.3, 0.5]))
    for events in ([(0.25, 0.375), (1.0, 1.5)], []):
        encoded = Encoded(audio=audio, transcript="hi", sound_events=events)
        save_entry(tmp_path, "ab" * 32, "audio", encoded, {})
        back = load_entry(tmp_path, "ab" * 32, "audio")
        assert back.sound_events == events and back.transcript == "hi"
        assert torch.equal(back.audio[0], audio[0])
