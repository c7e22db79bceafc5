"""The contest's metrics as pure functions: QA accuracy, NLTK METEOR (the contest's form and NLTK's default),
and the COCO caption metrics of pycocoevalcap 1.2 (BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D; Java).

Names used in reports (one name, one definition):

| name | definition |
|---|---|
| `meteor_contest_nltk_gamma0` | NLTK `meteor_score(refs, hyp, gamma=0)`: 10PR/(R+9P) over exact, Porter-stem and WordNet-synonym unigram matches, no fragmentation penalty, max over references (NLTK takes the max itself), mean over tasks |
| `meteor_nltk_gamma0.5` | the same with NLTK's default fragmentation penalty (`gamma=0.5`, `beta=3`) |
| `coco_bleu_1`..`coco_bleu_4`, `coco_meteor_1.5`, `coco_rouge_l`, `coco_cider_d` | pycocoevalcap 1.2 on PTB-tokenized, lower-cased, punctuation-free text (the COCO caption evaluation); corpus-level BLEU, mean of per-task METEOR 1.5 (Java), ROUGE-L and CIDEr-D |

Tokenisation for NLTK METEOR: lower-case, then `nltk.word_tokenize` (the series' earlier contests tokenised
with it: fbc2 2022 and the fbc3 2023 baseline's HF `evaluate` METEOR). Its sentence splitter needs the Punkt model
`punkt_tab`, which is not available offline; without it the same Treebank word tokenizer runs on sentences found
by an untrained Punkt splitter (no abbreviation list: "Mr. Smith" splits after "Mr."). `tokenize(..., "split")`
is plain `str.split()`.

NLTK's synonym stage compares the *Porter-stemmed* leftovers of the stem stage ('glad' never meets 'happy',
whose stem is 'happi'); that is NLTK's behaviour and is kept.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Literal

METEOR_CONTEST = "meteor_contest_nltk_gamma0"
METEOR_NLTK_DEFAULT = "meteor_nltk_gamma0.5"
COCO_BLEU = ("coco_bleu_1", "coco_bleu_2", "coco_bleu_3", "coco_bleu_4")
COCO_METEOR = "coco_meteor_1.5"
COCO_ROUGE_L = "coco_rouge_l"
COCO_CIDER_D = "coco_cider_d"
COCO_METRICS = (*COCO_BLEU, COCO_METEOR, COCO_ROUGE_L, COCO_CIDER_D)

Tokenizer = Literal["word_tokenize", "split"]
TOKENIZERS: tuple[Tokenizer, ...] = ("word_tokenize", "split")


# ---------------------------------------------------------------- QA


def is_choice_id(value: Any) -> bool:
    """Whether `value` is a well-typed QA answer: a JSON integer (not a bool, not a float such as 1.0)."""
    return isinstance(value, int) and not isinstance(value, bool)


def accuracy(correct: Sequence[int], predicted: Sequence[Any]) -> float:
    """Share of tasks whose predicted choice id equals the correct one.

    A prediction that is missing (None) or not an integer (a float, bool or string) counts as wrong.
    """
    if len(correct) != len(predicted):
        raise ValueError(f"{len(correct)} correct answers but {len(predicted)} predictions")
    if not correct:
        raise ValueError("accuracy of zero tasks is undefined")
    right = sum(
        is_choice_id(answer) and answer == gold for gold, answer in zip(correct, predicted, strict=True)
    )
    return right / len(correct)


def integral_score(meteor: float, accuracy_: float, w_meteor: float = 0.5, w_accuracy: float = 0.5) -> float:
    """CONTEST.md's integral score `I = w_M * METEOR + w_A * Accuracy` (the weights are not published)."""
    return w_meteor * meteor + w_accuracy * accuracy_


# ---------------------------------------------------------------- tokenisation


class _UntrainedPunktWords:
    """`nltk.word_tokenize` without the Punkt model: untrained Punkt sentences, then NLTK's Treebank words."""

    def __init__(self) -> None:
        from nltk.tokenize.destructive import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        self.sentences = PunktSentenceTokenizer()
        self.words = NLTKWordTokenizer()

    def __call__(self, text: str) -> list[str]:
        return [
            token for sentence in self.sentences.tokenize(text) for token in self.words.tokenize(sentence)
        ]


@cache
def _punkt_model_available() -> bool:
    import nltk.tokenize

    check = getattr(nltk.tokenize, "punkt_model_available", None)
    if check is not None:
        return bool(check("english"))
    try:
        nltk.tokenize.sent_tokenize("A test.")
    except LookupError:
        return False
    return True


@cache
def _untrained_punkt_words() -> _UntrainedPunktWords:
    return _UntrainedPunktWords()


def word_tokenizer_name(how: Tokenizer = "word_tokenize") -> str:
    """What `tokenize(text, how)` runs on this machine, for reports."""
    if how == "split":
        return "lower-case + str.split()"
    if _punkt_model_available():
        return "lower-case + nltk.word_tokenize"
    return (
        "lower-case + nltk.word_tokenize's Treebank words over untrained-Punkt sentences (no punkt_tab model)"
    )


def tokenize(text: str, how: Tokenizer = "word_tokenize") -> list[str]:
    """Lower-cased tokens of `text` for NLTK METEOR (see the module docstring)."""
    text = text.lower()
    if how == "split":
        return text.split()
    if how != "word_tokenize":
        raise ValueError(f"unknown tokenizer {how!r}; expected one of {', '.join(TOKENIZERS)}")
    if _punkt_model_available():
        from nltk.tokenize import word_tokenize

        return word_tokenize(text)
    return _untrained_punkt_words()(text)


# ---------------------------------------------------------------- NLTK METEOR


class NoSynonyms:
    """A stand-in for NLTK's WordNet reader that knows no synonyms: METEOR then matches exact words and stems."""

    def synsets(self, lemma: str, *args: Any, **kwargs: Any) -> list[Any]:
        return []


NO_SYNONYMS = NoSynonyms()


def meteor_nltk(
    references: Sequence[str],
    hypothesis: str,
    *,
    gamma: float = 0.5,
    wordnet: Any = None,
    tokenizer: Tokenizer = "word_tokenize",
) -> float:
    """NLTK's `meteor_score` of one caption: the best score over `references` (NLTK takes the max itself).

    `wordnet` is a WordNet reader (default `nltk.corpus.wordnet`, which raises LookupError when NLTK has no
    WordNet data) or `NO_SYNONYMS` to run without the synonym stage. `alpha=0.9, beta=3` are NLTK's defaults.
    """
    from nltk.translate.meteor_score import meteor_score

    if isinstance(references, str) or not references:
        raise ValueError("references must be a non-empty sequence of strings")
    if wordnet is None:
        from nltk.corpus import wordnet
    return float(
        meteor_score(
            [tokenize(reference, tokenizer) for reference in references],
            tokenize(hypothesis, tokenizer),
            gamma=gamma,
            wordnet=wordnet,
        )
    )


def meteor_contest(
    references: Sequence[str], hypothesis: str, *, wordnet: Any = None, tokenizer: Tokenizer = "word_tokenize"
) -> float:
    """`meteor_contest_nltk_gamma0`: NLTK METEOR without fragmentation penalty, max over references."""
    return meteor_nltk(references, hypothesis, gamma=0.0, wordnet=wordnet, tokenizer=tokenizer)


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values."""
    return math.fsum(values) / len(values) if values else None


# ---------------------------------------------------------------- COCO (pycocoevalcap 1.2, Java)


class CocoUnavailable(RuntimeError):
    """The COCO metrics cannot run here (no Java, no pycocoevalcap, or its JVM failed); the message says which."""


def coco_unavailable_reason() -> str | None:
    """None when the COCO metrics can run; else why not."""
    if shutil.which("java") is None:
        return "java is not on PATH (pycocoevalcap's METEOR 1.5 and PTB tokenizer are Java programs)"
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return "pycocoevalcap is not installed (pip install pycocoevalcap==1.2)"
    return None


def _clean(text: str) -> str:
    """One line without the METEOR protocol's separator: the Java tools read one caption per line."""
    return " ".join(text.replace("|||", " ").split())


class CocoScorer:
    """BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D from pycocoevalcap 1.2, with one METEOR JVM for its life.

    Starting the METEOR JVM costs 7-10 s: make one scorer per run (it is a context manager) and call
    `score` as often as needed. SPICE is left out: it downloads Stanford CoreNLP on first use.
    """

    def __init__(self) -> None:
        reason = coco_unavailable_reason()
        if reason is not None:
            raise CocoUnavailable(reason)
        self._meteor: Any = None

    def __enter__(self) -> CocoScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meteor_scorer(self) -> Any:
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            self._meteor = Meteor()
        return self._meteor

    def close(self) -> None:
        """Stop the METEOR JVM (if started)."""
        meteor, self._meteor = self._meteor, None
        if meteor is not None:
            process = meteor.meteor_p
            with meteor.lock:
                for stream in (process.stdin, process.stdout, process.stderr):
                    with contextlib.suppress(OSError):
                        stream.close()
                process.kill()
                process.wait()

    def tokenize(self, captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """COCO's PTB tokenization (Stanford PTBTokenizer, lower-case, punctuation removed)."""
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        data = {key: [{"caption": _clean(text)} for text in texts] for key, texts in captions.items()}
        try:
            out = PTBTokenizer().tokenize(data)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CocoUnavailable(f"PTBTokenizer failed: {exc}") from exc
        if {key: len(v) for key, v in out.items()} != {key: len(v) for key, v in captions.items() if v}:
            raise CocoUnavailable("PTBTokenizer returned a different number of captions than it was given")
        return out

    def score(
        self,
        references: Mapping[str, Sequence[str]],
        hypotheses: Mapping[str, str],
        *,
        ptb_tokenize: bool = True,
    ) -> dict[str, float]:
        """Corpus scores `{coco_bleu_1: ..., coco_cider_d: ...}` over the tasks in `hypotheses`.

        `references` maps each key of `hypotheses` to one or more reference captions. With `ptb_tokenize`
        the texts go through COCO's PTBTokenizer first (as the COCO caption evaluation does); without it they
        are only whitespace-normalised (as Maluuba/nlg-eval does).
        """
        if set(references) != set(hypotheses):
            raise ValueError("references and hypotheses must have the same keys")
        if not hypotheses:
            raise ValueError("no captions to score")
        if any(isinstance(refs, str) or not refs for refs in references.values()):
            raise ValueError("every task needs a non-empty list of reference captions")
        keys = [str(key) for key in hypotheses]
        gts = {str(key): [_clean(text) for text in references[key]] for key in hypotheses}
        res = {str(key): [_clean(hypotheses[key])] for key in hypotheses}
        if ptb_tokenize:
            tokenized = self.tokenize(
                {**{f"r{k}": v for k, v in gts.items()}, **{f"h{k}": res[k] for k in keys}}
            )
            gts = {k: tokenized[f"r{k}"] for k in keys}
            res = {k: tokenized[f"h{k}"] for k in keys}
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its statistics
            bleu, _ = Bleu(4).compute_score(gts, res)
        try:
            meteor, _ = self._meteor_scorer().compute_score(gts, res)
        except (ValueError, OSError) as exc:  # the JVM died: readline() gave b"" or the pipe broke
            detail = self._jvm_stderr()
            self.close()
            raise CocoUnavailable(f"METEOR 1.5 (Java) failed: {exc}{detail}") from exc
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        scores = dict(zip(COCO_BLEU, (float(b) for b in bleu), strict=True))
        scores.update({COCO_METEOR: float(meteor), COCO_ROUGE_L: float(rouge), COCO_CIDER_D: float(cider)})
        return scores

    def _jvm_stderr(self) -> str:
        process = getattr(self._meteor, "meteor_p", None)
        if process is None or process.poll() is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            text = process.stderr.read().decode(errors="replace").strip()
            return f" (JVM exit {process.returncode}: {text[-300:]})" if text else ""
        return ""


def coco_metrics(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str], *, ptb_tokenize: bool = True
) -> dict[str, float]:
    """`CocoScorer().score(...)` with a scorer of its own (starts and stops a METEOR JVM: 7-10 s)."""
    with CocoScorer() as scorer:
        return scorer.score(references, hypotheses, ptb_tokenize=ptb_tokenize)
