"""bench/learning.py end to end on the tiny preset: splits, feature-cache timing, training, the table and JSON."""

import json
import sys

from solution import KIT_ROOT

sys.path.insert(0, str(KIT_ROOT / "bench"))

import learning  # noqa: E402  (bench/learning.py)


def test_learning_bench_runs_every_part_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "json" / "learning.json"
    code = learning.main(["--config", "tiny", "--steps", "2", "--eval_every", "2", "--sizes", "12,6,14",
                          "--variants", "untrained,trimodal,audio_only", "--set", "runtime.threads=1",
                          "--out", str(tmp_path / "runs"), "--json", str(out), "--no_progress"])  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert [row["variant"] for row in results["rows"]] == ["untrained", "trimodal", "audio_only"]
    assert "train.lr=1e-3" in results["bench_overrides"]
    cache = results["feature_cache"]
    assert cache["cached_s_per_example"] < cache["encode_s_per_example"] and cache["speedup"] > 1
    for row in results["rows"]:
        heldout = row["heldout"]
        assert set(heldout["accuracy_by_category"]) == {"video", "audio", "both"}
        assert 0 <= heldout["accuracy"] <= 1 and heldout["meteor_contest_nltk_gamma0"] is not None
    assert results["rows"][1]["best_step"] == 2 and results["rows"][2]["no_video"] is True
    table = capsys.readouterr().out
    assert "| trimodal |" in table and "heldout both" in table and "feature cache:" in table
