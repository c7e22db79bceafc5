"""Score predictions against labels offline, the way the contest scores them (as far as it is published).

    python -m solution.score --labels data/sample/labels.json --predictions output_path_from_job/
    python -m solution.score --labels L.json --predictions for_classification_metric.json for_generative_metric.json \
        [--report report.json] [--weights 0.5,0.5] [--keying task_id|position] [--tokenizer word_tokenize|split]

Prints a table and (with --report) writes a JSON report: QA accuracy (overall and per `category`), the caption
metrics of `solution.metrics` with the contest's form `meteor_contest_nltk_gamma0` as the headline, the integral
score `I = w_M * METEOR + w_A * Accuracy`, and the mean seconds per task from run_summary.json when present.
Missing or ill-typed answers count as wrong (QA) or 0 (captions) and are listed. Exit status: 0 when scored,
2 when an input cannot be used (the message names the file and what was expected).

Where the contest's scoring is not published, the report says so in `notes`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solution import metrics
from solution.errors import KitError
from solution.outputs import CLASSIFICATION_FILE, GENERATIVE_FILE, SUMMARY_FILE, write_json_atomic
from solution.tasks import prediction_kind, read_json_file, validation_errors
from solution.validate import PREDICTION_FILE_KINDS

EXIT_OK, EXIT_UNUSABLE = 0, 2
DEFAULT_WEIGHTS = (0.5, 0.5)
KEYINGS = ("task_id", "position")
MAX_LISTED = 20  # problems printed on stdout; the report lists all of them
COCO_TOKENIZATION = "PTBTokenizer (lower-case, punctuation removed), as the COCO caption evaluation does"

NOTES = {
    "weights": "The integral score's weights w_M and w_A are not published by the organisers; "
    "these are parameters (default 0.5/0.5).",
    "integral_form": "CONTEST.md's integral form uses means: I = w_M * mean(METEOR) + w_A * Accuracy. "
    "The 2024 METRICS.md formula literally sums per-question values, w_M * sum_j METEOR_j + w_A * sum_i "
    "Accuracy_i; with unpublished weights the two differ only by a factor per term (reported as sum_form).",
    "meteor": "The 2024 contest's METEOR code is not published. The headline follows the series: an NLTK-derived "
    "meteor_score with gamma=0 (no fragmentation penalty) and the max over references, on nltk.word_tokenize "
    "tokens (fbc2 2022 scored VQA so; its captioning used NLTK's default gamma=0.5; the fbc3 2023 baseline "
    "validated with HF evaluate's METEOR, also gamma=0.5). COCO's METEOR 1.5 (Java) gives different numbers.",
    "qa_types": 'QA answers that are not JSON integers (1.0, true, "1") count as wrong here; the official '
    "baseline accepts floats, so a contest grader might count 1.0 as 1.",
    "speed": "Mean seconds per task comes from run_summary.json (the kit's per-task wall-clock time, model "
    "loading excluded; with_model_load spreads the load over the tasks). How the organisers time tau_i is not "
    "published.",
}


class ScoreInputError(KitError):
    """An input file is unusable for scoring; the message names the file and what was expected."""


@dataclass(frozen=True)
class LabelledTask:
    """One labelled record as the scorer needs it."""

    key: str  # the predictions' key: str(task_id), or str(index) with positional keying
    task_id: Any
    index: int
    task_type: str  # "qa" | "captioning"
    category: str | None
    choice_ids: tuple[int, ...] = ()
    correct: int | None = None  # qa
    references: tuple[str, ...] = ()  # captioning


@dataclass
class PredictionFiles:
    """The files a run produced (any may be absent)."""

    classification: Path | None = None
    generative: Path | None = None
    summary: Path | None = None


# ---------------------------------------------------------------- inputs


def load_labels(path: Path, keying: str = "task_id") -> list[LabelledTask]:
    """The labelled tasks of a labels file; raises ScoreInputError when the file is unusable or invalid."""
    document = read_json_file(path, "labels file")
    problems = validation_errors("labels", document)
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ScoreInputError(
            f"labels file {path}: not a valid labels file (solution/schemas/labels.schema.json): "
            f"{len(problems)} problem(s):\n  {shown}{more}"
        )
    tasks = []
    for index, record in enumerate(document):
        key = str(index) if keying == "position" else str(record["task_id"])
        common = {
            "key": key,
            "task_id": record["task_id"],
            "index": index,
            "task_type": record["task_type"],
            "category": record.get("category"),
        }
        if record["task_type"] == "qa":
            ids = tuple(choice["choice_id"] for choice in record["choices"])
            tasks.append(LabelledTask(**common, choice_ids=ids, correct=record["correct_answer_choice_id"]))
        else:
            references = record.get("references") or [record["correct_answer"]]
            tasks.append(LabelledTask(**common, references=tuple(references)))
    return tasks


def find_prediction_files(paths: Sequence[Path]) -> PredictionFiles:
    """The predictions given as one folder (the run's output folder) or as files; raises ScoreInputError."""
    files = PredictionFiles()
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        for name, kind in PREDICTION_FILE_KINDS.items():  # the contest's names first, then METRICS.md's
            if getattr(files, kind) is None and (folder / name).is_file():
                setattr(files, kind, folder / name)
        if (folder / SUMMARY_FILE).is_file():
            files.summary = folder / SUMMARY_FILE
        if files.classification is None and files.generative is None:
            raise ScoreInputError(
                f"predictions folder {folder}: holds neither {CLASSIFICATION_FILE} nor {GENERATIVE_FILE}; "
                "expected the output folder of a run (or name the files)"
            )
        return files
    for path in paths:
        if path.is_dir():
            raise ScoreInputError(f"predictions {path}: is a folder; give one folder alone, or files")
        if path.name == SUMMARY_FILE:
            kind = "summary"
        elif path.name in PREDICTION_FILE_KINDS:
            kind = PREDICTION_FILE_KINDS[path.name]
        else:
            document = read_json_file(path, "predictions file")
            kind = prediction_kind(document)
            if kind is None:
                raise ScoreInputError(
                    f"predictions file {path}: cannot tell whether it holds QA answers or captions (it is "
                    f"empty, mixed or not an object); name it {CLASSIFICATION_FILE} or {GENERATIVE_FILE}"
                )
        if getattr(files, kind) is not None:
            raise ScoreInputError(
                f"predictions file {path}: a second {kind} file (first: {getattr(files, kind)})"
            )
        setattr(files, kind, path)
    return files


def load_predictions(path: Path | None) -> dict[str, Any] | None:
    """A predictions file's `{key: answer}` object (None when no file was given); raises ScoreInputError."""
    if path is None:
        return None
    document = read_json_file(path, "predictions file")
    if not isinstance(document, dict):
        raise ScoreInputError(
            f"predictions file {path}: expected a JSON object mapping task keys to answers, "
            f"got {type(document).__name__}"
        )
    return document


def load_summary(path: Path | None) -> dict[str, Any] | None:
    """run_summary.json as written by the runner; raises ScoreInputError when it lacks the timing fields."""
    if path is None:
        return None
    document = read_json_file(path, "run summary")
    mean = document.get("mean_seconds_per_task") if isinstance(document, dict) else None
    if not _is_number(mean):
        raise ScoreInputError(
            f"run summary {path}: expected a JSON object with a number mean_seconds_per_task "
            "(the run_summary.json that run.py writes)"
        )
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _normalise_keys(predictions: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Keys as strings (JSON keys are strings already; callers passing int keys get them matched too)."""
    return {str(key): value for key, value in (predictions or {}).items()}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


# ---------------------------------------------------------------- scoring


def qa_problem(task: LabelledTask, predictions: Mapping[str, Any]) -> str | None:
    """Why the task's QA answer is not a usable choice id (counted wrong), or None when it is."""
    if task.key not in predictions:
        return "missing: no answer under this key"
    answer = predictions[task.key]
    if not metrics.is_choice_id(answer):
        return f"ill-typed: {_type_name(answer)} {answer!r} is not an integer choice_id"
    if answer not in task.choice_ids:
        return f"choice_id {answer} is not one of the record's choice ids {list(task.choice_ids)}"
    return None


def score_qa(tasks: Sequence[LabelledTask], predictions: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Accuracy overall and per category, per-task results and the answers that counted wrong for a reason."""
    tasks = [task for task in tasks if task.task_type == "qa"]
    answers = _normalise_keys(predictions)
    per_task, problems = [], []
    for task in tasks:
        answer = answers.get(task.key)
        problem = qa_problem(task, answers)
        right = problem is None and answer == task.correct
        per_task.append({"key": task.key, "task_id": task.task_id, "category": task.category,
                         "correct": task.correct, "predicted": answer, "right": right})  # fmt: skip
        if problem is not None:
            problems.append({"key": task.key, "task_id": task.task_id, "problem": problem})
    result: dict[str, Any] = {
        "tasks": len(tasks),
        "correct": sum(item["right"] for item in per_task),
        "accuracy": metrics.accuracy([t.correct for t in tasks], [answers.get(t.key) for t in tasks])
        if tasks
        else None,
        "problems": problems,
        "per_task": per_task,
    }
    if any(task.category is not None for task in tasks):
        groups: dict[str, list[bool]] = defaultdict(list)
        for item in per_task:
            groups[item["category"] or "(none)"].append(item["right"])
        result["by_category"] = {
            name: {"tasks": len(rights), "correct": sum(rights), "accuracy": sum(rights) / len(rights)}
            for name, rights in sorted(groups.items())
        }
    return result


def caption_problem(task: LabelledTask, predictions: Mapping[str, Any]) -> str | None:
    """Why the task's caption is missing, ill-typed or empty (scored 0), or None when it is a usable caption."""
    if task.key not in predictions:
        return "missing: no caption under this key (scored 0)"
    caption = predictions[task.key]
    if not isinstance(caption, str):
        return f"ill-typed: {_type_name(caption)} {caption!r} is not a string (scored 0)"
    if not caption.strip():
        return "empty caption (scored 0)"
    return None


def score_captions(
    tasks: Sequence[LabelledTask],
    predictions: Mapping[Any, Any] | None,
    *,
    wordnet: Any,
    tokenizer: metrics.Tokenizer = "word_tokenize",
    coco: metrics.CocoScorer | None = None,
) -> dict[str, Any]:
    """NLTK METEOR (contest form and NLTK default) per task and on average, and the COCO metrics when `coco`."""
    tasks = [task for task in tasks if task.task_type == "captioning"]
    captions = _normalise_keys(predictions)
    per_task, problems = [], []
    for task in tasks:
        problem = caption_problem(task, captions)
        text = captions[task.key] if problem is None else ""
        item = {"key": task.key, "task_id": task.task_id, "category": task.category}
        for name, gamma in ((metrics.METEOR_CONTEST, 0.0), (metrics.METEOR_NLTK_DEFAULT, 0.5)):
            item[name] = (
                metrics.meteor_nltk(task.references, text, gamma=gamma, wordnet=wordnet, tokenizer=tokenizer)
                if problem is None
                else 0.0
            )
        item["caption"] = captions.get(task.key)
        per_task.append(item)
        if problem is not None:
            problems.append({"key": task.key, "task_id": task.task_id, "problem": problem})
    names = (metrics.METEOR_CONTEST, metrics.METEOR_NLTK_DEFAULT)
    result: dict[str, Any] = {
        "tasks": len(tasks),
        "headline_metric": metrics.METEOR_CONTEST,
        "metrics": {name: metrics.mean([item[name] for item in per_task]) for name in names},
        "tokenizer": metrics.word_tokenizer_name(tokenizer),
        "problems": problems,
        "per_task": per_task,
    }
    if any(task.category is not None for task in tasks):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in per_task:
            groups[item["category"] or "(none)"].append(item)
        result["by_category"] = {
            group: {"tasks": len(items), **{name: metrics.mean([i[name] for i in items]) for name in names}}
            for group, items in sorted(groups.items())
        }
    result["coco"] = {"computed": False, "reason": "not requested", "tokenization": COCO_TOKENIZATION}
    if coco is not None and tasks:
        references = {task.key: list(task.references) for task in tasks}
        hypotheses = {
            item["key"]: item["caption"] if isinstance(item["caption"], str) else "" for item in per_task
        }
        try:
            result["metrics"].update(coco.score(references, hypotheses))
            result["coco"].update(computed=True, reason=None)
        except metrics.CocoUnavailable as exc:
            result["coco"]["reason"] = str(exc)
    return result


def speed_summary(summary: Mapping[str, Any] | None, source: Path | None = None) -> dict[str, Any] | None:
    """The mean seconds per task (the "fastest solution" nomination's T) from a run summary."""
    if summary is None:
        return None
    per_task = [item for item in summary.get("per_task") or [] if isinstance(item, dict)]
    seconds = [item["seconds"] for item in per_task if _is_number(item.get("seconds"))]
    by_type: dict[str, list[float]] = defaultdict(list)
    for item in per_task:
        if _is_number(item.get("seconds")):
            by_type[str(item.get("task_type"))].append(item["seconds"])
    load = summary.get("model_load_seconds")
    n = summary.get("tasks") if _is_number(summary.get("tasks")) else len(per_task)
    result = {
        "source": str(source) if source else None,
        "mean_seconds_per_task": float(summary["mean_seconds_per_task"]),
        "tasks": n,
        "by_task_type": {name: metrics.mean(values) for name, values in sorted(by_type.items())},
        "model_load_seconds": float(load) if _is_number(load) else None,
        "by_source": summary.get("by_source"),
    }
    if _is_number(load) and n:
        result["mean_seconds_per_task_with_model_load"] = float(summary["mean_seconds_per_task"]) + load / n
    if seconds and not math.isclose(
        metrics.mean(seconds) or 0.0, result["mean_seconds_per_task"], rel_tol=1e-6
    ):
        result["note"] = f"per_task seconds average {metrics.mean(seconds):.4f}, not mean_seconds_per_task"
    return result


def parse_weights(text: str) -> tuple[float, float]:
    """`"w_M,w_A"` → two finite non-negative floats (argparse type)."""
    parts = text.split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected two non-negative numbers 'w_M,w_A' such as 0.5,0.5, got {text!r}"
        )
    return values  # type: ignore[return-value]


def wordnet_for_meteor(data_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The WordNet reader for METEOR's synonym stage, or `NO_SYNONYMS`, and a report entry saying which."""
    from solution import wordnet as kit_wordnet

    reader, where = kit_wordnet.load_wordnet(data_dir or kit_wordnet.DEFAULT_DATA_DIR)
    if reader is not None:
        return reader, {"active": True, "wordnet": where}
    warning = (
        f"WordNet is not available ({where}): METEOR matched exact words and stems only, without its synonym "
        "stage, so the METEOR numbers are LOWER than the contest's. Run `python -m solution.wordnet`."
    )
    return metrics.NO_SYNONYMS, {"active": False, "wordnet": None, "warning": warning}


def score(
    labels: Sequence[LabelledTask],
    qa_predictions: Mapping[Any, Any] | None,
    caption_predictions: Mapping[Any, Any] | None,
    *,
    summary: Mapping[str, Any] | None = None,
    weights: tuple[float, float] = DEFAULT_WEIGHTS,
    wordnet: Any = None,
    synonym_stage: Mapping[str, Any] | None = None,
    tokenizer: metrics.Tokenizer = "word_tokenize",
    coco: metrics.CocoScorer | None = None,
    coco_reason: str | None = None,
    keying: str = "task_id",
) -> dict[str, Any]:
    """The whole report (a JSON-ready dict) for labelled tasks and the two predictions mappings."""
    warnings_: list[str] = []
    if wordnet is None:
        wordnet, synonym_stage = wordnet_for_meteor()
    synonym_stage = dict(synonym_stage or {"active": not isinstance(wordnet, metrics.NoSynonyms)})
    if not synonym_stage.get("active"):
        warnings_.append(
            synonym_stage.get("warning") or "METEOR ran without its WordNet synonym stage (exact + stem only)"
        )
    counts = {
        "qa": sum(t.task_type == "qa" for t in labels),
        "captioning": sum(t.task_type == "captioning" for t in labels),
    }
    for kind, given, name in (
        ("qa", qa_predictions, CLASSIFICATION_FILE),
        ("captioning", caption_predictions, GENERATIVE_FILE),
    ):
        if given is None and counts[kind]:
            warnings_.append(
                f"no {name} was given: its {counts[kind]} {kind} task(s) count as missing "
                "(the contest may not score a run that lacks this file at all)"
            )
    qa = score_qa(labels, qa_predictions)
    captions = score_captions(labels, caption_predictions, wordnet=wordnet, tokenizer=tokenizer, coco=coco)
    captions["synonym_stage"] = synonym_stage
    if coco is None and coco_reason:
        captions["coco"]["reason"] = coco_reason
    asked = coco is not None or (coco_reason is not None and coco_reason != "--no-coco")
    if counts["captioning"] and not captions["coco"]["computed"] and asked:
        warnings_.append(f"COCO metrics not computed: {captions['coco']['reason']}")

    keys = {t.key for t in labels}
    qa_keys, caption_keys = set(_normalise_keys(qa_predictions)), set(_normalise_keys(caption_predictions))
    extra = sorted(qa_keys - keys) + sorted(caption_keys - keys)
    answered = qa_keys | caption_keys
    if labels and answered and not answered & keys:
        other = "position" if keying == "task_id" else "task_id"
        other_keys = {str(t.index) if other == "position" else str(t.task_id) for t in labels}
        hint = (
            f": {len(answered & other_keys)} match by {other}, try --keying {other}"
            if answered & other_keys
            else ""
        )
        warnings_.append(f"no prediction key matches a labelled task's key (keyed by {keying}){hint}")

    w_m, w_a = weights
    meteor = captions["metrics"][metrics.METEOR_CONTEST]
    integral = {
        "w_M": w_m,
        "w_A": w_a,
        "formula": f"I = {w_m:g} * {metrics.METEOR_CONTEST} + {w_a:g} * accuracy",
        "weights_note": NOTES["weights"],
        "score": metrics.integral_score(meteor, qa["accuracy"], w_m, w_a)
        if meteor is not None and qa["accuracy"] is not None
        else None,
        "sum_form": w_m * sum(item[metrics.METEOR_CONTEST] for item in captions["per_task"])
        + w_a * qa["correct"],
    }
    if integral["score"] is None:
        integral["missing"] = "needs both qa and captioning tasks in the labels"
    return {
        "keying": keying,
        "tasks": {
            "total": len(labels),
            **counts,
            "answered_usably": len(labels) - len(qa["problems"]) - len(captions["problems"]),
        },
        "qa": qa,
        "captioning": captions,
        "integral": integral,
        "speed": speed_summary(summary),
        "extra_predictions": extra,
        "warnings": warnings_,
        "notes": NOTES,
    }


# ---------------------------------------------------------------- output


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(report: Mapping[str, Any]) -> str:
    """The human-readable summary of a report."""
    lines = []
    tasks, qa, cap = report["tasks"], report["qa"], report["captioning"]
    lines.append(
        f"Scored {tasks['total']} task(s) ({tasks['qa']} qa, {tasks['captioning']} captioning), keyed by "
        f"{report['keying']}."
    )
    lines.append("")
    width = 34
    if qa["tasks"]:
        lines.append(f"{'QA accuracy':<{width}} {_fmt(qa['accuracy'])}  ({qa['correct']}/{qa['tasks']})")
        for name, group in (qa.get("by_category") or {}).items():
            label = f"  category {name}"
            lines.append(f"{label:<{width}} {_fmt(group['accuracy'])}  ({group['correct']}/{group['tasks']})")
    if cap["tasks"]:
        lines.append(f"Captioning ({cap['tasks']} task(s); tokens: {cap['tokenizer']})")
        for name, value in cap["metrics"].items():
            tag = "  <- headline (contest form)" if name == cap["headline_metric"] else ""
            if name == cap["headline_metric"] and not cap["synonym_stage"].get("active"):
                tag += " WITHOUT SYNONYMS"
            lines.append(f"{'  ' + name:<{width}} {_fmt(value)}{tag}")
        for group, values in (cap.get("by_category") or {}).items():
            label = f"  category {group}"
            lines.append(
                f"{label:<{width}} {_fmt(values[metrics.METEOR_CONTEST])}  ({values['tasks']} task(s))"
            )
        if not cap["coco"]["computed"]:
            lines.append(f"  (COCO metrics not computed: {cap['coco']['reason']})")
    integral = report["integral"]
    lines.append(f"{'Integral ' + integral['formula']:<{width}}")
    lines.append(
        f"{'  score':<{width}} {_fmt(integral['score'])}  (weights not published by the organisers)"
        if integral["score"] is not None
        else f"{'  score':<{width}} n/a ({integral.get('missing')})"
    )
    speed = report["speed"]
    if speed is not None:
        extra = ""
        if speed.get("mean_seconds_per_task_with_model_load") is not None:
            extra = f"; {speed['mean_seconds_per_task_with_model_load']:.3f} with model load"
        lines.append(
            f"{'Mean seconds per task':<{width}} {speed['mean_seconds_per_task']:.3f}  ({speed['tasks']} task(s){extra})"
        )
    problems = [("qa", item) for item in qa["problems"]] + [("captioning", item) for item in cap["problems"]]
    if problems:
        lines.append("")
        lines.append(f"{len(problems)} answer(s) counted wrong or 0 for a reason:")
        for kind, item in problems[:MAX_LISTED]:
            lines.append(f"  {kind} {item['key']}: {item['problem']}")
        if len(problems) > MAX_LISTED:
            lines.append(f"  ... and {len(problems) - MAX_LISTED} more (see the report)")
    if report["extra_predictions"]:
        shown = ", ".join(report["extra_predictions"][:10])
        more = " ..." if len(report["extra_predictions"]) > 10 else ""
        lines.append(
            f"{len(report['extra_predictions'])} prediction key(s) match no labelled task: {shown}{more}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m solution.score",
        description="Score predictions against labels: QA accuracy, caption METEOR (contest form and others), "
        "integral score, mean seconds per task.",
    )
    parser.add_argument(
        "--labels", required=True, type=Path, help="labels JSON (solution/schemas/labels.schema.json)"
    )
    parser.add_argument(
        "--predictions",
        required=True,
        nargs="+",
        type=Path,
        metavar="DIR_OR_FILE",
        help=f"a run's output folder, or the files ({CLASSIFICATION_FILE}, {GENERATIVE_FILE}, {SUMMARY_FILE})",
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--weights",
        type=parse_weights,
        default=DEFAULT_WEIGHTS,
        metavar="W_M,W_A",
        help="integral score weights of METEOR and accuracy (default 0.5,0.5; not published by the organisers)",
    )
    parser.add_argument(
        "--keying",
        choices=KEYINGS,
        default="task_id",
        help="match predictions by str(task_id) (default) or by the record's position in the labels file",
    )
    parser.add_argument(
        "--tokenizer",
        choices=metrics.TOKENIZERS,
        default="word_tokenize",
        help="tokens for NLTK METEOR: nltk word_tokenize (default, the series' choice) or str.split()",
    )
    parser.add_argument("--no-coco", action="store_true", help="skip the COCO metrics (Java; ~10 s to start)")
    parser.add_argument(
        "--wordnet-dir", type=Path, help="NLTK data folder holding WordNet (default .cache/nltk_data)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Score; print the table; write the report. Returns 0, or 2 when an input is unusable."""
    args = build_parser().parse_args(argv)
    try:
        labels = load_labels(args.labels, args.keying)
        files = find_prediction_files(args.predictions)
        qa_predictions = load_predictions(files.classification)
        caption_predictions = load_predictions(files.generative)
        summary = load_summary(files.summary)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE

    wordnet, synonym_stage = wordnet_for_meteor(args.wordnet_dir)
    coco_reason = "--no-coco" if args.no_coco else metrics.coco_unavailable_reason()
    coco = None
    if coco_reason is None and any(task.task_type == "captioning" for task in labels):
        coco = metrics.CocoScorer()
    try:
        report = score(
            labels,
            qa_predictions,
            caption_predictions,
            summary=summary,
            weights=args.weights,
            wordnet=wordnet,
            synonym_stage=synonym_stage,
            tokenizer=args.tokenizer,
            coco=coco,
            coco_reason=coco_reason,
            keying=args.keying,
        )
    finally:
        if coco is not None:
            coco.close()
    report["inputs"] = {
        "labels": str(args.labels),
        "classification": str(files.classification) if files.classification else None,
        "generative": str(files.generative) if files.generative else None,
        "run_summary": str(files.summary) if files.summary else None,
    }
    if report["speed"] is not None:
        report["speed"]["source"] = str(files.summary)
    print(format_table(report))
    for warning in report["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.report is not None:
        try:
            write_json_atomic(args.report, report)
        except OSError as exc:
            print(f"error: report {args.report}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
            return EXIT_UNUSABLE
        print(f"Report: {args.report}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
