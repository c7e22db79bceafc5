"""The official baseline's method (baseline/): video only, STC connector, one forward per option, greedy captions,
through the kit's runner and output files."""

import json
from pathlib import Path

import pytest
import torch

from baseline import run as baseline_run
from baseline.model import BASELINE_FRAMES, STCConnector, baseline_config, build_baseline
from solution import heads, score, validate
from solution.outputs import CLASSIFICATION_FILE, GENERATIVE_FILE, SUMMARY_FILE
from solution.prompt import option_texts
from solution.runner import Runner
from solution.tasks import load_task_file, parse_task


@pytest.fixture(scope="module")
def baseline():
    return build_baseline(baseline_config("tiny", ["runtime.threads=1"]))


def test_config_is_video_only_sixteen_frames_one_task_at_a_time():
    cfg = baseline_config("tiny")
    assert cfg.media.num_frames == BASELINE_FRAMES == 16 and cfg.audio.encoder == "none"
    assert cfg.vision.num_tags == 0 and not cfg.prompt.qa_calibration and cfg.runtime.batch_size == 1


def test_stc_connector_shapes_and_untrained_start():
    connector = STCConnector(feature_dim=8, hidden=12, pool=4)
    tokens = connector(torch.randn(16, 8, 7, 7))
    assert tokens.shape == (16 // 2 * (4 // 2) ** 2, 12)  # time and space halved by the 3D convolution
    assert tokens.abs().max() == 0  # zero last layer: an untrained connector adds nothing
    assert connector(torch.randn(5, 8, 3, 3)).shape == (3 * 4, 12)  # odd frame count: last frame repeated


def test_one_forward_per_option_lowest_perplexity(baseline, sample_tasks: Path):
    records = load_task_file(sample_tasks)
    index = next(i for i, r in enumerate(records) if r["task_type"] == "qa")
    task = parse_task(records[index], index, sample_tasks.parent)
    frames, wave, _ = Runner(baseline, baseline.cfg).load_media(task)
    assert frames.pixels.shape[0] == 16 and wave is None  # audio is not even read
    encoded = baseline.encode(frames, wave)
    assert encoded.video[0].shape[0] == 16 // 2 * 4 and encoded.audio is None and not encoded.transcript
    prefix = baseline.prefix_embeds(task, encoded)
    calls = []
    hook = baseline.llm.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["inputs_embeds"].shape),
                                              with_kwargs=True)  # fmt: skip
    try:
        answer = baseline.answer(task, prefix)
    finally:
        hook.remove()
    n = len(task.choices)
    assert len(calls) == n and all(shape[0] == 1 for shape in calls)  # batch size 1, one pass per option
    option_ids = [baseline.tokenizer(t, add_special_tokens=False).input_ids for t in option_texts(task)]
    cached = heads.score_options(baseline.llm, prefix, option_ids)  # the same rule, computed the fast way
    torch.testing.assert_close(torch.tensor(answer.scores), cached, atol=1e-4, rtol=0)
    assert answer.choice_id == task.choices[int(cached.argmax())].choice_id


def test_baseline_run_writes_outputs_the_scorer_reads(sample_tasks: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = baseline_run.main(["--input_path", str(sample_tasks), "--output_dir", str(out), "--config", "tiny",
                              "--no_progress", "--set", "runtime.threads=1"])  # fmt: skip
    assert code == 0 and "baseline: " in capsys.readouterr().err
    records = json.loads(sample_tasks.read_text())
    qa = json.loads((out / CLASSIFICATION_FILE).read_text())
    captions = json.loads((out / GENERATIVE_FILE).read_text())
    assert set(qa) | set(captions) == {str(r["task_id"]) for r in records}
    assert all(c.strip() for c in captions.values())
    by_source = json.loads((out / SUMMARY_FILE).read_text())["by_source"]
    assert by_source.get("fallback", 0) == 0 and sum(by_source.values()) == len(records)  # all by the model
    assert validate.main(["predictions", str(out / CLASSIFICATION_FILE), str(out / GENERATIVE_FILE)]) == 0
    labels = sample_tasks.parent / "labels.json"
    assert score.main(["--labels", str(labels), "--predictions", str(out), "--no-coco"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_bad_config_exits_2(sample_tasks: Path, tmp_path: Path):
    assert baseline_run.main(["--input_path", str(sample_tasks), "--output_dir", str(tmp_path),
                              "--config", "tiny", "--set", "media.num_frames=0"]) == 2  # fmt: skip
