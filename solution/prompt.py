"""The prompt: one function that turns a task and its evidence into chat text, used by inference and training alike.

Video and audio appear as runs of placeholder tokens, exactly one per fused feature token; the fused features
replace them in the LLM's input embeddings (`heads.merge_placeholders`). Text evidence (zero-shot visual tags
and the speech transcript) is written out so that even an untrained fusion leaves the LLM something to read.
"""

from __future__ import annotations

from .config import ORDINALS, PromptConfig
from .llm import PLACEHOLDERS
from .tasks import Task

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def option_texts(task: Task) -> list[str]:
    """The continuation scored for each option (its text, as the contest's perplexity rule does)."""
    return [" ".join(choice.text.split()) or "(empty option)" for choice in task.choices]


def clip_words(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def sounds_line(n_events: int, asked: bool = False) -> str:
    """The sound events in time order, each named by its ordinal: "Sounds: first <|sound|>; second <|sound|>.";
    with `asked` (and events), then the event the question is about: " The asked sound: <|sound|>."."""
    events = [f"{ORDINALS[i]} {PLACEHOLDERS['events']}" for i in range(n_events)]
    line = f"Sounds: {'; '.join(events) if events else 'none'}."
    return f"{line} The asked sound: {PLACEHOLDERS['events']}." if asked and events else line


def user_message(
    task: Task,
    n_video: int,
    n_audio: int,
    tags: list[str],
    transcript: str,
    cfg: PromptConfig,
    n_events: int | None = None,
    asked_event: bool = False,
) -> str:
    """The user turn: media placeholders, text evidence, the question (first with `cfg.question_first`) and, for QA
    with `cfg.list_options`, the lettered options. `n_events` (None = no list): the sound events listed after the
    audio tokens, and with `asked_event` the one the question is about (`sounds_line`)."""
    question = f"Question: {task.question.strip()}"
    lines = [question] if cfg.question_first else []
    lines.append(f"Video: {PLACEHOLDERS['video'] * n_video}" if n_video else "Video: not available.")
    if tags:
        lines.append(f"Things visible in the video: {', '.join(tags)}.")
    lines.append(f"Audio: {PLACEHOLDERS['audio'] * n_audio}" if n_audio else "Audio: not available.")
    if n_audio and n_events is not None:
        lines.append(sounds_line(n_events, asked_event))
    if transcript:
        lines.append(f'Speech in the audio: "{clip_words(transcript, cfg.max_transcript_words)}"')
    if not cfg.question_first:
        lines.append(question)
    if task.task_type == "qa":
        if cfg.list_options:
            lines.append("Options:")
            lines += [f"({LETTERS[i % 26]}) {text}" for i, text in enumerate(option_texts(task))]
        lines.append(cfg.qa_instruction)
    else:
        lines.append(cfg.caption_instruction)
    return "\n".join(lines)


def chat_prompt(tokenizer, task: Task, n_video: int, n_audio: int, tags: list[str], transcript: str,
                cfg: PromptConfig, n_events: int | None = None, asked_event: bool = False) -> str:  # fmt: skip
    """The full prompt text up to where the assistant's answer starts."""
    user = user_message(task, n_video, n_audio, tags, transcript, cfg, n_events, asked_event)
    messages = [{"role": "system", "content": cfg.system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def neutral_prompt(tokenizer, cfg: PromptConfig) -> str:
    """A prompt without task content: the baseline likelihood of an option's wording (for PMI calibration)."""
    messages = [{"role": "system", "content": cfg.system}, {"role": "user", "content": cfg.qa_instruction}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def text_stream(task: Task, transcript: str) -> str:
    """What the fusion's text stream reads: the question, the options and the transcript."""
    parts = [task.question.strip()]
    if task.task_type == "qa":
        parts.append(" | ".join(option_texts(task)))
    if transcript:
        parts.append(transcript)
    return "\n".join(parts)
