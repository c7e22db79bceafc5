"""Batched inference: padded scoring and generation equal the one-task-at-a-time path; the runner's batches and
prefetch give the same output files as batch_size=1 and keep per-task error isolation."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_heads import HIDDEN, OPTIONS, tiny_tokenizer
from test_heads import tiny_model as tiny_llm

from solution.config import load_config
from solution.errors import ConfigError
from solution.heads import (
    generate_caption,
    generate_captions,
    pad_prefixes,
    score_option_lists,
    score_options,
    score_options_batch,
)
from solution.outputs import CLASSIFICATION_FILE, GENERATIVE_FILE
from solution.runner import Runner, run_tasks

PREFIX_LENGTHS = (9, 4, 13)  # different lengths: padding must not leak
OPTION_LISTS = [OPTIONS, [[20, 21], [22]], [[30], [31, 32, 33, 34, 35, 36], [37]]]


def prefixes() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randn(1, n, HIDDEN, generator=g) for n in PREFIX_LENGTHS]


def test_pad_prefixes_sides_and_masks():
    a, b = torch.ones(1, 3, 2), 2 * torch.ones(1, 1, 2)
    right, mask = pad_prefixes([a, b], "right")
    assert (
        mask.tolist() == [[1, 1, 1], [1, 0, 0]]
        and right[1, 0].tolist() == [2, 2]
        and right[1, 1:].abs().sum() == 0
    )
    left, mask = pad_prefixes([a, b], "left")
    assert (
        mask.tolist() == [[1, 1, 1], [0, 0, 1]]
        and left[1, 2].tolist() == [2, 2]
        and left[1, :2].abs().sum() == 0
    )
    with pytest.raises(ValueError, match="side"):
        pad_prefixes([a], "middle")


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_batched_scoring_equals_one_task_at_a_time(kind):
    model = tiny_llm(kind)
    batched = score_options_batch(model, prefixes(), OPTION_LISTS)
    assert [s.shape for s in batched] == [(len(o),) for o in OPTION_LISTS]
    for prefix, options, got in zip(prefixes(), OPTION_LISTS, batched, strict=True):
        torch.testing.assert_close(got, score_options(model, prefix, options), atol=1e-4, rtol=0)
    assert max(float(s.max() - s.min()) for s in batched) > 1e-2  # options really told apart
    shared = score_option_lists(model, prefixes()[0], OPTION_LISTS)  # one prefix, several option lists
    for options, got in zip(OPTION_LISTS, shared, strict=True):
        assert torch.equal(got, score_options(model, prefixes()[0], options))  # bitwise


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("penalty, ngram", [(1.0, 0), (1.1, 3)])
def test_batched_captions_equal_one_at_a_time(kind, penalty, ngram):
    model, tokenizer = tiny_llm(kind), tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    settings = dict(max_new_tokens=12, no_repeat_ngram_size=ngram, repetition_penalty=penalty)
    batched = generate_captions(model, tokenizer, prefixes(), **settings)
    alone = [generate_caption(model, tokenizer, p, **settings) for p in prefixes()]
    assert batched == alone and all(alone) and max(len(c.split()) for c in alone) == 12


def test_runtime_fields_are_checked_by_name():
    for override, field in [("runtime.batch_size=0", "runtime.batch_size"), ("runtime.prefetch=-1", "runtime.prefetch"),
                            ("runtime.batch_mode=fast", "runtime.batch_mode"),
                            ("runtime.attn_implementation=flash", "runtime.attn_implementation")]:  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            load_config("tiny", [override])


@pytest.mark.parametrize("mode", ["full", "exact"])
def test_answer_batch_equals_answer(sample_tasks: Path, tiny_model, tiny_cfg, mode):
    from solution.tasks import load_task_file, parse_task

    runner = Runner(tiny_model, tiny_cfg)
    tasks, prefix_list = [], []
    for i, record in enumerate(load_task_file(sample_tasks)):
        task = parse_task(record, i, sample_tasks.parent)
        task, prefix, _ = runner.encode(task, tiny_cfg, None)
        tasks.append(task)
        prefix_list.append(prefix)
    alone = [tiny_model.answer(t, p) for t, p in zip(tasks, prefix_list, strict=True)]
    batched = tiny_model.answer_batch(tasks, prefix_list, mode=mode)
    assert {t.task_type for t in tasks} == {"qa", "captioning"}
    for a, b in zip(alone, batched, strict=True):
        assert a.choice_id == b.choice_id and a.caption == b.caption
        if a.scores is not None:
            torch.testing.assert_close(torch.tensor(b.scores), torch.tensor(a.scores), atol=1e-4, rtol=0)
            if mode == "exact":
                assert a.scores == b.scores


def many(sample_tasks: Path, copies: int, folder: Path) -> Path:
    """A copy of the sample split in `folder` whose tasks.json holds its tasks `copies` times (new task_ids)."""
    shutil.copytree(sample_tasks.parent, folder)
    records = json.loads(sample_tasks.read_text())
    path = folder / "tasks.json"
    path.write_text(
        json.dumps([{**r, "task_id": f"{k}-{r['task_id']}"} for k in range(copies) for r in records])
    )
    return path


def outputs(out: Path) -> tuple[str, str]:
    return (out / CLASSIFICATION_FILE).read_text(), (out / GENERATIVE_FILE).read_text()


def test_runner_batches_give_the_same_files(sample_tasks: Path, tiny_model, tmp_path: Path):
    tasks = many(sample_tasks, 2, tmp_path / "twice")
    one = load_config("tiny", ["runtime.batch_size=1", "runtime.prefetch=0"])
    reference = run_tasks(tasks, tmp_path / "one", one, progress=False, model=tiny_model)
    for settings in (["runtime.batch_size=3"], ["runtime.batch_size=5", "runtime.prefetch=2"],
                     ["runtime.batch_size=1", "runtime.prefetch=1"]):  # fmt: skip
        cfg = load_config("tiny", settings)
        out = tmp_path / "-".join(settings)
        result = run_tasks(tasks, out, cfg, progress=False, model=tiny_model)
        assert outputs(out) == outputs(tmp_path / "one"), settings
        assert [t["key"] for t in result.tasks] == [t["key"] for t in reference.tasks]
        assert all(t["seconds"] > 0 for t in result.tasks) and result.summary()["by_source"] == {"model": 12}
        if "runtime.prefetch=2" in settings:
            assert result.stage_seconds["decode_background"] > 0  # decoded by the workers


def test_a_bad_task_in_a_batch_costs_only_its_own_answer(
    sample_tasks: Path, tiny_model, tmp_path: Path, monkeypatch
):
    tasks = many(sample_tasks, 1, tmp_path / "split")
    records = json.loads(tasks.read_text())
    broken = {"task_id": "broken", "task_type": "qa", "question": "?", "video": "", "audio": ""}  # no choices
    records.insert(2, broken)
    tasks.write_text(json.dumps(records))
    original, original_batch = tiny_model.answer, tiny_model.answer_batch
    failing = records[3]["task_id"]
    calls = {"batch": 0, "alone": 0, "failed batch": 0}

    def answer_batch(batch, prefixes, mode="full"):
        calls["batch"] += 1
        if any(t.task_id == failing for t in batch):
            calls["failed batch"] = len(batch)
            raise RuntimeError("out of memory (simulated)")
        return original_batch(batch, prefixes, mode=mode)

    def answer(task, prefix):
        calls["alone"] += 1
        if task.task_id == failing:
            raise RuntimeError("out of memory (simulated)")
        return original(task, prefix)

    monkeypatch.setattr(tiny_model, "answer_batch", answer_batch)
    monkeypatch.setattr(tiny_model, "answer", answer)
    cfg = load_config("tiny", ["runtime.batch_size=4", "runtime.prefetch=1"])
    result = run_tasks(tasks, tmp_path / "out", cfg, progress=False, model=tiny_model)
    sources = {t["key"]: t["source"] for t in result.tasks}
    assert sources.pop("broken") == "fallback" and sources.pop(str(failing)) == "fallback"
    assert set(sources.values()) == {"model"} and len(sources) == len(records) - 2
    assert sorted((e["task_id"], e["stage"]) for e in result.errors) == sorted(
        [("broken", "record"), (str(failing), "model")]
    )
    assert (
        calls["failed batch"] > 1 and calls["alone"] == calls["failed batch"]
    )  # the failed batch retried alone


def test_batch_settings_keep_a_journal_reusable_and_auto_mode_resolves(tiny_model):
    from solution.journal import config_sha256

    base = config_sha256(load_config("tiny"))
    assert config_sha256(load_config("tiny", ["runtime.batch_size=1", "runtime.prefetch=0"])) == base
    assert config_sha256(load_config("tiny", ["runtime.batch_mode=exact"])) != base  # can change a last digit
    assert Runner(tiny_model, load_config("tiny")).batch_mode() == "full"  # float32
    assert Runner(tiny_model, load_config("tiny", ["runtime.cpu_bf16_autocast=true"])).batch_mode() == "exact"
    assert Runner(tiny_model, load_config("tiny", ["llm.dtype=bfloat16"])).batch_mode() == "exact"
    assert (
        Runner(
            tiny_model, load_config("tiny", ["runtime.cpu_bf16_autocast=true", "runtime.batch_mode=full"])
        ).batch_mode()
        == "full"
    )


def test_exact_mode_under_bf16_autocast_gives_the_same_files(
    sample_tasks: Path, tiny_model, tmp_path: Path, monkeypatch
):
    settings = ["runtime.cpu_bf16_autocast=true"]
    monkeypatch.setattr(tiny_model, "cfg", load_config("tiny", settings))  # the model reads its own runtime
    tasks = many(sample_tasks, 2, tmp_path / "bf16")
    one = load_config("tiny", [*settings, "runtime.batch_size=1", "runtime.prefetch=0"])
    run_tasks(tasks, tmp_path / "one", one, progress=False, model=tiny_model)
    batched = load_config("tiny", [*settings, "runtime.batch_size=4"])  # batch_mode auto: exact here
    run_tasks(tasks, tmp_path / "batched", batched, progress=False, model=tiny_model)
    assert outputs(tmp_path / "batched") == outputs(tmp_path / "one")


def test_batches_group_tasks_by_type_and_finish_records_in_order():
    """Captions batch with captions and QA with QA; `end` never passes a task that is not computed yet; a group
    waits at most BATCH_LOOKAHEAD batch sizes of records; reused (journalled) tasks are skipped."""
    from solution.runner import BATCH_LOOKAHEAD

    class Model:
        def answer_batch(self): ...

    size = 3
    types = ["qa", "captioning", "qa", "qa", "captioning", "qa", "qa"] + ["qa"] * 12 + ["captioning", "bad"]
    records = [{"task_type": t} for t in types] + ["not a record", {"task_type": "qa"}]
    reused = {5: None, 22: None}  # a journalled task in the middle and one at the end
    runner = Runner(Model(), load_config("tiny", [f"runtime.batch_size={size}"]))
    batches = list(runner.batches(records, reused))
    seen, final = [], 0
    for end, items in batches:
        indices = [i for i, _ in items]
        seen += indices
        assert len(items) <= size and indices == sorted(indices) and (items or end == len(records))
        kinds = {records[i]["task_type"] if isinstance(records[i], dict) else "" for i in indices}
        assert len(kinds) == (1 if items else 0)
        assert end >= final and set(range(end)) <= set(seen) | set(reused)  # all before `end` is computed
        final = end
    assert sorted(seen) == [i for i in range(len(records)) if i not in reused] and final == len(records)
    assert batches[0] == (1, [(0, 0), (2, 0), (3, 0)])  # three QA tasks; the caption at 1 waits for company
    waited = [items for _, items in batches].index([(1, 0), (4, 0)])  # ... until the look-ahead runs out
    assert max(i for _, items in batches[:waited] for i, _ in items) < 1 + BATCH_LOOKAHEAD * size
    order = [i for _, items in batches for i, _ in items]
    assert order[-3:] == [19, 20, 21]  # the rest, flushed in file order
    # journalled tasks after the last full batch are finished too (a last, empty batch takes `end` to the end)
    tail = list(runner.batches([{"task_type": "qa"}] * 4, {3: None}))
    assert tail == [(3, [(0, 0), (1, 0), (2, 0)]), (4, [])]
