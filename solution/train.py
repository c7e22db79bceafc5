"""Training: the fusion module and projector fully, the LLM through LoRA; encoders frozen (their outputs cached).

The loss is the next-token loss of the answer only, after the exact prompt used at inference
(`TriModalModel.prefix_embeds` on the same `Encoded`): for a QA task the correct option's text (the continuation
`prompt.option_texts` gives, which the heads score at inference), for a captioning task one of its references,
each followed by the end-of-sequence token. Examples are right-padded into one batch (attention mask; labels -100
on the prompt and the padding). Modality dropout removes the video (with its visual tags) or the audio (with its
transcript) of an example, as an unreadable file would at inference.

Each epoch visits every training task once, or as often as `train.repeats` gives its group (its labels.json
`train.group_by` field, e.g. a question kind). Determinism: the data order, the reference picked and the
modalities dropped are functions of (seed, step, position in the global batch), never of the process, so one
process and N data-parallel processes (accelerate, gloo on CPU) see the same global batches; the loss is
normalised by the global batch's answer-token count.
Everything a resumed run needs is in the checkpoint (`solution/checkpoint.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import checkpoint as ckpt
from . import heads
from .config import KitConfig, build_dataclass, load_config, merge, parse_override
from .errors import ConfigError, KitError
from .feature_cache import DEFAULT_CACHE_DIR, FeatureCache
from .model import FUSION_PREFIXES, Encoded, TriModalModel, build_model
from .prompt import option_texts
from .runner import Runner
from .splits import LABELS_FILE, Split, load_split
from .tasks import Task, parse_task

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"
TRAIN_CONFIG_FILE = "train_config.json"
DEV_METRICS_FILE = "dev_metrics.json"
BEST_DIR = "best"


@dataclass
class TrainConfig:
    """Training hyper-parameters (`--set train.FIELD=VALUE`; the common ones also have their own flags)."""

    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 8
    """Global batch: examples per optimizer step, split over the data-parallel processes."""
    lr: float = 2e-4
    """Peak learning rate of the LoRA adapters."""
    fusion_lr: float = 1e-3
    """Peak learning rate of the fusion module and projector (trained from scratch)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 10
    """Linear warm-up steps; then cosine decay to min_lr_ratio times the peak."""
    min_lr_ratio: float = 0.1
    """Learning rate at the last step, relative to the peak."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    option_loss: float = 1.0
    """Weight of the QA ranking loss (cross-entropy of the options' scores against the correct one, per QA example)
    added to the answer tokens' mean next-token loss; 0 trains on the answer tokens alone."""
    group_by: str = "category"
    """The labels.json field that names a training task's group, for train.repeats (a task without it is in no
    group)."""
    repeats: dict[str, int] = field(default_factory=dict)
    """Times each epoch visits the tasks of a group (train.group_by value -> count; a group not named: once; 0
    leaves it out), e.g. `--set 'train.repeats={colour_at_beep: 3}' --set train.group_by=kind` to show a hard
    question kind more often. Whole numbers, so every epoch has the same length."""
    drop_video: float = 0.1
    """Probability that an example loses its video (and visual tags) for a step."""
    drop_audio: float = 0.1
    """Probability that an example loses its audio (and transcript) for a step; never together with the video."""
    eval_every: int = 50
    """Evaluate on the dev split and write a checkpoint every this many steps, and after the last; 0 = last only."""
    save_every: int = 0
    """Also write a checkpoint every this many steps; 0 = only with the evaluations."""
    keep_checkpoints: int = 2
    """Checkpoints kept in the output folder (older ones are removed; best/ is separate)."""
    projector_init: str = "random"
    """The projector's output layers at the start of a fresh run. random: drawn (the MLP's as PyTorch's Linear, the
    read-outs and the time-aligned frame read-out normal with std 0.02), so the tokens carry their clip's evidence
    into the LLM from the first step; zero: as built for inference (untrained, they add nothing; the gradient then
    reaches the fusion only once the output layer has grown, which was too slow to learn anything in a few hundred
    steps)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        for name in (
            "warmup_steps",
            "eval_every",
            "save_every",
            "weight_decay",
            "grad_clip",
            "lr",
            "fusion_lr",
            "option_loss",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        for group, count in self.repeats.items():
            if count < 0:
                raise ConfigError(f"train.repeats.{group}: must be >= 0, got {count}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if self.projector_init not in ("random", "zero"):
            raise ConfigError(f"train.projector_init: expected random or zero, got {self.projector_init!r}")
        if min(self.drop_video, self.drop_audio) < 0 or self.drop_video + self.drop_audio > 1:
            raise ConfigError(
                f"train.drop_video + train.drop_audio: each >= 0 and together <= 1, got "
                f"{self.drop_video} + {self.drop_audio}"
            )


TRAJECTORY_FIELDS = (
    "steps", "batch_size", "lr", "fusion_lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip",
    "option_loss", "group_by", "repeats", "drop_video", "drop_audio", "projector_init",
)  # fmt: skip
"""TrainConfig fields that a resumed run must share with the run that wrote the checkpoint."""


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """`--set` values for the kit config and those for TrainConfig (`train.FIELD=VALUE`, prefix removed)."""
    kit, train = [], []
    for text in overrides:
        if text.strip().startswith("train."):
            train.append(text.strip()[len("train.") :])
        else:
            kit.append(text)
    return kit, train


def train_config(overrides: Sequence[str] = (), **values: Any) -> TrainConfig:
    """A TrainConfig from `FIELD=VALUE` overrides, then keyword values (None values are ignored)."""
    data: dict[str, Any] = {}
    for text in overrides:
        data = merge(data, parse_override(text))
    data.update({k: v for k, v in values.items() if v is not None})
    return build_dataclass(TrainConfig, data, "train.")


# ---------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """A training task and the answers it may be trained towards."""

    task: Task
    # QA: the correct option's text (as option_texts gives it); captioning: the reference captions
    targets: tuple[str, ...]
    answer_index: int | None = None  # QA: the correct option's index in task.choices
    group: str | None = None  # its labels record's train.group_by value, for train.repeats


def load_examples(split: Split, group_by: str = "category") -> list[Example]:
    """The labelled records of a split as Examples, grouped by their field `group_by` (the split was validated by
    `load_split`)."""
    examples = []
    for index, (record, task_record) in enumerate(zip(split.records, split.tasks, strict=True)):
        task = parse_task(task_record, index, split.root)
        if task.task_type == "qa":
            ids = [choice.choice_id for choice in task.choices]
            correct = record["correct_answer_choice_id"]
            answer_index = ids.index(correct)
            targets = (option_texts(task)[answer_index],)
        else:
            answer_index, targets = None, tuple(record.get("references") or [record["correct_answer"]])
        group = record.get(group_by)
        examples.append(Example(task, targets, answer_index, None if group is None else str(group)))
    if not examples:
        raise KitError(f"split {split.root}: {LABELS_FILE} holds no task to train on")
    return examples


def answer_ids(tokenizer, text: str) -> list[int]:
    """The answer's token ids as the heads see them (no special tokens added), then end-of-sequence."""
    return tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


@dataclass(frozen=True)
class Planned:
    """One example of one step's global batch."""

    example: int  # index into the training examples
    target_ids: tuple[int, ...]
    drop_video: bool
    drop_audio: bool


def epoch_visits(examples: Sequence[Example], repeats: dict[str, int]) -> np.ndarray:
    """The example indices an epoch visits, each as many times as train.repeats gives its group (once if none)."""
    return np.repeat(np.arange(len(examples)), [repeats.get(e.group, 1) for e in examples])


def check_repeats(examples: Sequence[Example], cfg: TrainConfig) -> None:
    """ConfigError unless every group train.repeats names has training tasks and some task is left to visit."""
    groups = {e.group for e in examples} - {None}
    unknown = sorted(set(cfg.repeats) - groups)
    if unknown:
        raise ConfigError(f"train.repeats: no training task has {cfg.group_by} {', '.join(map(repr, unknown))} "
                          f"(the training split's: {sorted(groups) or 'none'})")  # fmt: skip
    if not len(epoch_visits(examples, cfg.repeats)):
        raise ConfigError(f"train.repeats: {cfg.repeats} leaves no training task to visit")


@lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the n training examples."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def plan_step(
    examples: Sequence[Example], tokenizer, cfg: TrainConfig, seed: int, step: int
) -> list[Planned]:
    """The global batch of step `step` (0-based): a pure function of its arguments, the same in every process."""
    visits, planned = epoch_visits(examples, cfg.repeats), []
    for j in range(cfg.batch_size):
        epoch, offset = divmod(step * cfg.batch_size + j, len(visits))
        index = int(visits[epoch_order(seed, epoch, len(visits))[offset]])
        rng = np.random.default_rng([seed, step, j])
        targets = examples[index].targets
        text = targets[int(rng.integers(len(targets)))]
        draw = rng.random()
        drop_video = bool(draw < cfg.drop_video)
        drop_audio = bool(not drop_video and draw < cfg.drop_video + cfg.drop_audio)
        planned.append(Planned(index, tuple(answer_ids(tokenizer, text)), drop_video, drop_audio))
    return planned


def drop_modalities(encoded: Encoded, drop_video: bool, drop_audio: bool) -> Encoded:
    """The Encoded without its video (and visual tags) and/or its audio (and transcript and sound events)."""
    if drop_video:
        encoded = dataclasses.replace(encoded, video=None, tags=[])
    if drop_audio:
        encoded = dataclasses.replace(encoded, audio=None, transcript="", sound_events=[])
    return encoded


# ---------------------------------------------------------------- loss


class AnswerLoss(nn.Module):
    """The losses of a batch (the module that data parallelism wraps), from the heads' own option scoring
    (`heads.option_scores`: the inference prompt, then each continuation after its cached prefix):

    - the summed next-token loss of the answer tokens (the correct option's tokens for QA, a reference caption's
      for captioning, each followed by end-of-sequence);
    - for QA, the summed cross-entropy of the options' scores (mean log-likelihoods, the scores inference ranks)
      against the correct option: the decision itself, with the task's own distractors pushed down.

    items: (task, encoded, answer token ids, index of the correct option or None for captioning). With
    `rank=False` the options are not scored and the ranking loss is 0.
    """

    def __init__(self, model: TriModalModel, rank: bool = True):
        super().__init__()
        self.model = model
        self.rank = rank

    def forward(
        self, items: Sequence[tuple[Task, Encoded, Sequence[int], int | None]]
    ) -> tuple[Tensor, Tensor]:
        model = self.model
        prefixes, continuations = [], []
        for task, encoded, target_ids, correct in items:
            prefixes.append(model.prefix_embeds(task, encoded))  # (1, P, H): the inference prompt
            texts = option_texts(task) if self.rank and correct is not None else []
            options = model.tokenizer(texts, add_special_tokens=False).input_ids if texts else []
            continuations.append([*options, list(target_ids)])  # the options as scored, then the answer
        with model.autocast():
            scores = heads.option_scores(model.llm, prefixes, continuations)  # each (n_options + 1,)
        answer = -sum(s[-1] * len(item[2]) for s, item in zip(scores, items, strict=True))
        ranking = [F.cross_entropy(s[None, :-1], torch.tensor([item[3]], device=s.device), reduction="sum")
                   for s, item in zip(scores, items, strict=True) if self.rank and item[3] is not None]  # fmt: skip
        return answer, sum(ranking, answer.new_zeros(()))


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def check_trainable(model: TriModalModel) -> None:
    """Only LoRA, fusion and projector parameters may train (encoders and the base LLM stay frozen)."""
    wrong = [n for n in trainable_names(model) if not (n.startswith(FUSION_PREFIXES) or "lora_" in n)]
    assert not wrong, f"parameters outside LoRA/fusion/projector would train: {wrong[:5]}"


def set_training(model: TriModalModel, training: bool) -> None:
    """Train mode for fusion, projector and LLM (dropout); the frozen encoders always run in eval mode."""
    model.train(training)
    for encoder in (model.vision, model.audio):
        if encoder is not None:
            encoder.eval()


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning rate of step `step` (0-based) relative to the peak: linear warm-up, then cosine decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: TriModalModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(FUSION_PREFIXES)]
    fusion = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(FUSION_PREFIXES)]
    groups = [{"params": lora, "lr": cfg.lr}, {"params": fusion, "lr": cfg.fusion_lr}]
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------- dev evaluation


class Evaluator:
    """Answers a labelled split (the dev split while training) through `Runner`, as run.py does, and scores it
    like `python -m solution.score` (without the COCO metrics). The Runner decodes and encodes the media itself:
    the feature cache serves training only, so that evaluation stays exactly the inference path.

    The split's media are read wherever its paths lead (`runtime.allow_any_media_path`), as training reads them: a
    split written with linked media (`python -m solution.splits --media link`) points outside its folder, and
    run.py's guard would answer its tasks without video or audio. Tasks answered with a medium or text missing are
    counted in `degraded`, with a warning: their score is not the model's."""

    def __init__(self, split: Split, cfg: KitConfig):
        from .score import load_labels, wordnet_for_meteor

        self.split = split
        self.cfg = dataclasses.replace(
            cfg, runtime=dataclasses.replace(cfg.runtime, allow_any_media_path=True)
        )
        self.labels = load_labels(split.root / LABELS_FILE, cfg.runtime.keying)
        self.wordnet, self.synonym_stage = wordnet_for_meteor()

    def __call__(self, model: TriModalModel) -> dict[str, Any]:
        from .metrics import METEOR_CONTEST
        from .score import score

        start, was_training = time.perf_counter(), model.training
        set_training(model, False)
        try:
            result = Runner(model, self.cfg).run(self.split.tasks, self.split.root, progress=False)
        finally:
            set_training(model, was_training)
        report = score(self.labels, result.qa, result.captions, wordnet=self.wordnet,
                       synonym_stage=self.synonym_stage, coco_reason="--no-coco",
                       keying=self.cfg.runtime.keying)  # fmt: skip
        accuracy = report["qa"]["accuracy"]
        meteor = report["captioning"]["metrics"][METEOR_CONTEST]
        integral = report["integral"]["score"]
        metrics = {
            "score": next((v for v in (integral, accuracy, meteor) if v is not None), None),
            "integral": integral,
            "accuracy": accuracy,
            METEOR_CONTEST: meteor,
            "fallbacks": sum(t["source"] == "fallback" for t in result.tasks),
            "degraded": sum(t["source"] == "degraded" for t in result.tasks),
            "seconds": round(time.perf_counter() - start, 3),
        }
        if result.errors:
            first = result.errors[0]
            print(f"warning: dev evaluation of {self.split.root}: {len(result.errors)} problem(s), e.g. task "
                  f"{first['task_id']} ({first['stage']}): {first['reason']}", file=sys.stderr)  # fmt: skip
        if "by_category" in report["qa"]:
            metrics["accuracy_by_category"] = {
                k: v["accuracy"] for k, v in report["qa"]["by_category"].items()
            }
        return metrics


# ---------------------------------------------------------------- logs


class MetricsLog:
    """metrics.jsonl (one line per step; dev metrics on evaluation steps) and the training.png plot."""

    def __init__(self, out_dir: Path, keep_until: int = 0):
        self.path = out_dir / METRICS_FILE
        self.plot_path = out_dir / PLOT_FILE
        self.records: list[dict[str, Any]] = []
        if keep_until and self.path.is_file():  # resuming: drop what a killed run logged after its checkpoint
            lines = self.path.read_text(encoding="utf-8").splitlines()
            self.records = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= keep_until]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def plot(self) -> bool:
        """Write training.png (train loss and dev score over steps); False when matplotlib is not installed."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            warnings.warn("matplotlib is not installed: training.png was not written", stacklevel=2)
            return False
        figure = Figure(figsize=(10, 4), layout="constrained")
        loss_axes, dev_axes = figure.subplots(1, 2)
        loss_axes.plot([r["step"] for r in self.records], [r["loss"] for r in self.records], lw=1,
                       label="answer tokens")  # fmt: skip
        ranked = [(r["step"], r["option_loss"]) for r in self.records if r.get("option_loss") is not None]
        if ranked:
            loss_axes.plot(*zip(*ranked, strict=True), lw=1, label="QA options (ranking)")
        loss_axes.set(xlabel="step", ylabel="train loss", title="training loss")
        loss_axes.legend()
        dev = [r for r in self.records if "dev" in r]
        for name in ("score", "accuracy", "meteor_contest_nltk_gamma0"):
            points = [(r["step"], r["dev"][name]) for r in dev if r["dev"].get(name) is not None]
            if points:
                dev_axes.plot(*zip(*points, strict=True), marker="o", label=name)
        dev_axes.set(xlabel="step", ylabel="dev", title="dev evaluation")
        if dev:
            dev_axes.legend()
        figure.savefig(self.plot_path, dpi=100)
        return True


# ---------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    model: TriModalModel
    out_dir: Path
    step: int
    best_step: int | None
    best_score: float | None
    records: list[dict[str, Any]] = field(default_factory=list)
    feature_stats: dict[str, int] = field(default_factory=dict)


def make_accelerator(cfg: KitConfig):
    """accelerate's Accelerator: gloo on CPU (optionally several processes), bf16 mixed precision on GPU."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    cpu = cfg.runtime.device == "cpu" or not torch.cuda.is_available()
    handlers: list[Any] = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun / accelerate launch
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16", kwargs_handlers=handlers)


def comparable(cfg: KitConfig) -> dict[str, Any]:
    """The config fields that shape training, which a resumed run must share with its checkpoint."""
    data = cfg.to_dict()
    data["llm"].pop("adapter")  # the checkpoint's own files
    data["fusion"].pop("weights")
    runtime = {k: data["runtime"][k] for k in ("device", "cpu_bf16_autocast", "seed")}
    return {
        **{k: data[k] for k in ("media", "vision", "audio", "fusion", "llm", "prompt")},
        "runtime": runtime,
    }


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: checkpoint {vb!r}, now {va!r}")
    return out


def resume_point(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to continue from (None: start afresh); refuses to overwrite a run without --resume."""
    found = ckpt.complete_checkpoints(out_dir) if out_dir.is_dir() else []
    if found and not resume:
        raise KitError(
            f"{out_dir} already holds checkpoints (latest {found[-1][1].name}): pass --resume to continue, "
            "or choose another --out"
        )
    return found[-1][1] if found else None


def check_resumable(checkpoint: Path, cfg: KitConfig, tcfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint's trainer state, after checking it was trained with this config; KitError otherwise."""
    state = ckpt.load_state_file(checkpoint / ckpt.STATE_FILE)
    problems = _differences(comparable(cfg), comparable(load_config(checkpoint)))
    saved = {**dataclasses.asdict(TrainConfig()), **state.get("train_config", {})}  # older: defaults
    problems += [f"train.{name}: checkpoint {saved[name]!r}, now {getattr(tcfg, name)!r}"
                 for name in TRAJECTORY_FIELDS if saved[name] != getattr(tcfg, name)]  # fmt: skip
    if problems:
        raise ConfigError(
            f"{checkpoint}: cannot resume with a different configuration:\n  " + "\n  ".join(problems)
        )
    return state


class Trainer:
    """One training run in one process (of one or several data-parallel ones): set-up, steps, evaluation,
    checkpoints. `train()` is the function to call."""

    def __init__(self, cfg: KitConfig, tcfg: TrainConfig, train_dir: Path, out_dir: Path,
                 dev_dir: Path | None, resume: bool, cache_dir: Path | None, progress: bool = True):  # fmt: skip
        self.accelerator = accelerator = make_accelerator(cfg)
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.main = accelerator.is_main_process
        if tcfg.batch_size < self.world:
            raise ConfigError(f"train.batch_size: {tcfg.batch_size} is fewer than the {self.world} processes")
        self.cfg, self.tcfg, self.out_dir = cfg, tcfg, Path(out_dir)
        self.examples = load_examples(load_split(train_dir), tcfg.group_by)
        check_repeats(self.examples, tcfg)
        self.evaluator = Evaluator(load_split(dev_dir), cfg) if dev_dir is not None and self.main else None
        start = resume_point(self.out_dir, resume)
        state = check_resumable(start, cfg, tcfg) if start is not None else None

        self.model = build_model(load_config(start) if start is not None else cfg, trainable=True)
        check_trainable(self.model)
        set_training(self.model, True)
        self.optimizer = make_optimizer(self.model, tcfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(lr_factor, tcfg))
        self.seed, self.n = cfg.runtime.seed, len(epoch_visits(self.examples, tcfg.repeats))  # epoch length
        self.step, self.best_step, self.best_score = 0, None, None
        if state is not None:
            self.restore(start, state, train_dir)
        else:
            torch.manual_seed(self.seed + self.rank)  # dropout masks differ between processes
        if self.main:
            if start is None:  # a fresh run: no best/ of an earlier run may pass for this one's
                shutil.rmtree(self.out_dir / BEST_DIR, ignore_errors=True)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / TRAIN_CONFIG_FILE).write_text(
                json.dumps(dataclasses.asdict(tcfg), indent=1) + "\n"
            )
        self.log = MetricsLog(self.out_dir, keep_until=self.step) if self.main else None
        self.features = FeatureCache(self.model, cfg, cache_dir)
        if state is None:
            self.initialise(progress=progress and self.main)
        self.loss_module = accelerator.prepare(AnswerLoss(self.model, rank=tcfg.option_loss > 0))
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def initialise(self, progress: bool) -> None:
        """A fresh run's data-dependent start (the same in every process): the fusion's video and audio inputs
        standardised with the training features' statistics (encoding every training clip into the feature
        cache now rather than during the first epoch), and the projector's output layer drawn at random
        (train.projector_init)."""
        sums: dict[str, list[Any]] = {}  # modality -> [count, sum (D,), sum of squares (D,)], float64
        for example in tqdm(
            self.examples, desc="features", unit="task", disable=not progress, dynamic_ncols=True
        ):
            encoded = self.features.get(example.task)
            for modality in ("video", "audio"):
                pair = getattr(encoded, modality)
                if pair is not None and pair[0].shape[0]:
                    tokens = pair[0].double()  # (N, D)
                    acc = sums.setdefault(modality, [0, 0.0, 0.0])
                    acc[0] += tokens.shape[0]
                    acc[1] = acc[1] + tokens.sum(0)
                    acc[2] = acc[2] + (tokens * tokens).sum(0)
        embed = self.model.fusion.embed
        for modality, (count, total, squares) in sums.items():
            if count >= 2 and modality in embed.input_dims:
                mean = total / count
                std = ((squares - count * mean * mean) / (count - 1)).clamp_min(0).sqrt()
                embed.set_input_statistics(modality, mean.float(), std.float())
        if self.tcfg.projector_init == "random":
            generator = torch.Generator().manual_seed(self.seed)
            projector = self.model.projector
            nn.init.kaiming_uniform_(
                projector.proj.weight, a=math.sqrt(5), generator=generator
            )  # Linear's default
            bound = 1 / math.sqrt(projector.proj.in_features)
            nn.init.uniform_(projector.proj.bias, -bound, bound, generator=generator)
            # standardised inputs: tokens of norm ~ 0.02 sqrt(D_in * H)
            for layer in (
                *projector.read_out.values(),
                *([projector.aligned] if projector.aligned_cells else []),
            ):
                nn.init.normal_(layer.weight, std=0.02, generator=generator)

    def restore(self, start: Path, state: dict[str, Any], train_dir: Path) -> None:
        """Continue from checkpoint `start`: step, optimizer, scheduler, best score, this process's RNGs."""
        self.step = int(state["step"])
        order = torch.from_numpy(self.order(self.step))
        if int(state["num_examples"]) != self.n or not torch.equal(state["data_order"], order):
            raise KitError(
                f"{start}: the training split {train_dir} is not the one this checkpoint trained on"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_step = int(state["best_step"]) if state["best_step"] >= 0 else None
        self.best_score = None if math.isnan(state["best_score"]) else float(state["best_score"])
        rng_path = start / ckpt.rng_file(self.rank)
        if rng_path.is_file():
            ckpt.set_rng_state(ckpt.load_state_file(rng_path))
        else:  # resumed with more processes than wrote the checkpoint
            warnings.warn(f"{rng_path} not found: RNGs reseeded, dropout will not follow the interrupted run",
                          stacklevel=2)  # fmt: skip
            torch.manual_seed(self.seed + self.step + self.rank)

    def order(self, done: int) -> np.ndarray:
        """The example order of the epoch that the step after `done` steps draws from."""
        return epoch_order(self.seed, done * self.tcfg.batch_size // self.n, self.n)

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step on the global batch of `step`; returns its log record."""
        started = time.perf_counter()
        plan = plan_step(self.examples, self.model.tokenizer, self.tcfg, self.seed, step)
        total_tokens = sum(len(p.target_ids) for p in plan)
        total_qa = sum(self.examples[p.example].answer_index is not None for p in plan)
        items = []
        for p in plan[self.rank :: self.world]:  # this process's share of the global batch
            example = self.examples[p.example]
            encoded = drop_modalities(self.features.get(example.task), p.drop_video, p.drop_audio)
            items.append((example.task, encoded, p.target_ids, example.answer_index))
        with self.accelerator.autocast():
            answer_sum, ranking_sum = self.loss_module(items)
        # processes average their gradients: scaled so, the result is the mean over the global batch's answer
        # tokens, plus option_loss times the mean over its QA examples
        loss = answer_sum / total_tokens + self.tcfg.option_loss * ranking_sum / max(total_qa, 1)
        self.accelerator.backward(loss * self.world)
        if self.tcfg.grad_clip:
            self.accelerator.clip_grad_norm_(self.params, self.tcfg.grad_clip)
        lrs = self.scheduler.get_last_lr()  # (LoRA, fusion)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        sums = self.accelerator.reduce(torch.stack([answer_sum, ranking_sum]).detach(), "sum").tolist()
        ranked = total_qa and self.tcfg.option_loss
        done = step + 1
        return {"step": done, "epoch": round(done * self.tcfg.batch_size / self.n, 4),
                "loss": sums[0] / total_tokens, "option_loss": sums[1] / total_qa if ranked else None,
                "lr": lrs[0], "fusion_lr": lrs[1], "tokens": total_tokens,
                "seconds": round(time.perf_counter() - started, 4)}  # fmt: skip

    def save_checkpoint(self, done: int) -> None:
        """checkpoint-<done>/: written into a .tmp folder by every process (its RNGs), renamed by the main one."""
        tmp, final = self.out_dir / f"checkpoint-{done}.tmp", self.out_dir / f"checkpoint-{done}"
        if self.main:
            ckpt.fresh_folder(tmp)
        self.accelerator.wait_for_everyone()
        torch.save(ckpt.rng_state(), tmp / ckpt.rng_file(self.rank))
        self.accelerator.wait_for_everyone()
        if self.main:
            ckpt.save_model_files(self.model, self.cfg, tmp)
            ckpt.save_trainer_state(tmp, {
                "step": done, "num_examples": self.n, "data_order": torch.from_numpy(self.order(done)),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "train_config": dataclasses.asdict(self.tcfg), "world_size": self.world,
                "best_step": -1 if self.best_step is None else self.best_step,
                "best_score": float("nan") if self.best_score is None else self.best_score,
            })  # fmt: skip
            ckpt.replace_folder(tmp, final)
            ckpt.prune_checkpoints(self.out_dir, self.tcfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def save_best(self, done: int, metrics: dict[str, Any]) -> None:
        """best/ = a copy of checkpoint-<done> plus its dev metrics (main process only)."""
        tmp = self.out_dir / f"{BEST_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.out_dir / f"checkpoint-{done}", tmp)
        (tmp / DEV_METRICS_FILE).write_text(json.dumps({"step": done, **metrics}, indent=1) + "\n")
        ckpt.replace_folder(tmp, self.out_dir / BEST_DIR)

    def evaluate(self, done: int, record: dict[str, Any]) -> bool:
        """Dev metrics into `record`; True when the dev score is the best so far (main process only)."""
        if self.evaluator is None:
            return False
        record["dev"] = self.evaluator(self.model)
        if record["dev"]["fallbacks"]:
            warnings.warn(f"step {done}: {record['dev']['fallbacks']} dev task(s) got fallback answers",
                          stacklevel=2)  # fmt: skip
        score = record["dev"]["score"]
        if score is None or (self.best_score is not None and score <= self.best_score):
            return False
        self.best_step, self.best_score = done, score
        return True

    def run(self, stop_after: int | None, progress: bool) -> TrainResult:
        tcfg, done = self.tcfg, self.step
        bar = tqdm(range(self.step, tcfg.steps), initial=self.step, total=tcfg.steps, desc="train",
                   unit="step", disable=not (progress and self.main), dynamic_ncols=True)  # fmt: skip
        for step in bar:
            record = self.train_step(step)
            done = record["step"]
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            if stop_after is not None and stop_after <= done < tcfg.steps:
                if self.log is not None:
                    self.log.write(record)
                break  # as if killed here: nothing more is written
            evaluate = done == tcfg.steps or (tcfg.eval_every > 0 and done % tcfg.eval_every == 0)
            improved = self.evaluate(done, record) if evaluate else False
            if self.log is not None:
                self.log.write(record)
                if evaluate:
                    self.log.plot()
            if evaluate or (tcfg.save_every > 0 and done % tcfg.save_every == 0):
                self.save_checkpoint(done)
            if self.main and (improved or (done == tcfg.steps and self.best_step is None)):
                self.best_step = self.best_step or done  # no dev score at all: the last model is the best
                self.save_best(done, record.get("dev", {}))
        bar.close()
        best_missing = self.main and self.best_step is not None and not (self.out_dir / BEST_DIR).is_dir()
        if best_missing and (self.out_dir / f"checkpoint-{self.best_step}").is_dir():  # killed while copying
            logged = next((r for r in self.log.records if r["step"] == self.best_step), {})
            self.save_best(self.best_step, logged.get("dev", {}))
        self.accelerator.wait_for_everyone()
        records = self.log.records if self.log is not None else []
        return TrainResult(self.model, self.out_dir, done, self.best_step, self.best_score, records,
                           self.features.stats())  # fmt: skip


def train(
    cfg: KitConfig,
    tcfg: TrainConfig,
    train_dir: Path,
    out_dir: Path,
    dev_dir: Path | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> TrainResult:
    """Train on the labelled split `train_dir`, evaluating on `dev_dir`; checkpoints and logs go to `out_dir`.

    `resume=True` continues from the latest complete checkpoint in `out_dir` (starting afresh when there is
    none); without it an `out_dir` holding checkpoints is refused. `stop_after` ends the run after that many
    steps without writing anything more, as a killed process would (for tests). `cache_dir=None` keeps the
    encoder features in memory only. Raises KitError (ConfigError, SplitError...) on unusable inputs.
    """
    trainer = Trainer(cfg, tcfg, Path(train_dir), Path(out_dir), None if dev_dir is None else Path(dev_dir),
                      resume, cache_dir, progress)  # fmt: skip
    return trainer.run(stop_after, progress)
