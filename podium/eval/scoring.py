"""Questions with gold answers, the prompts Podium sends for them, and the scoring rules.

Task files are JSON lines in the formats of ``../shared/data/tasks`` (one object a line); the
kind of a question is read from its fields, so any file in those shapes works:

- multiple choice (``query``, ``choices``, ``gold`` index): the model answers with a letter;
  ``choices == ["no", "yes"]`` (boolq) is a yes/no question instead;
- numeric (``context``, ``answer`` a number; gsm8k, svamp): the last number in the answer;
- short answer (``context``, ``answer``, ``aliases``; triviaqa): normalised exact match or
  containment of the answer or an alias;
- code (``prompt``, ``test``, ``entry_point``; human_eval): run against its tests in a
  sandboxed subprocess (:mod:`podium.eval.sandbox`, :mod:`podium.sandbox`).

Scoring never raises on what a model says: an answer that cannot be parsed scores 0 with
``parsed = False``.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["mc", "yesno", "numeric", "short", "code"]
LETTERS = "ABCDEFGHIJ"

# Output budgets per kind: small models on a shared CPU make every token count.
MAX_TOKENS: dict[str, int] = {"mc": 4, "yesno": 3, "numeric": 16, "short": 16, "code": 384}


class TaskFileError(ValueError):
    """A task file that cannot be read; the message names the file and line."""


@dataclass(slots=True)
class Question:
    qid: str  # task:sha1 of the prompt, stable across runs (resume key)
    task: str
    kind: Kind
    prompt: str
    system: str | None
    max_tokens: int
    gold: Any  # index (mc), bool (yesno), float (numeric), aliases (short), tests (code)
    entry_point: str | None = None
    code_prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Score:
    correct: bool
    parsed: bool  # False: no answer could be read from the text
    extracted: str | None = None
    detail: str | None = None


# -- building questions -------------------------------------------------------------------------

SYSTEM_MC = "Answer the multiple-choice question with the letter of the correct choice only."
SYSTEM_YESNO = "Answer the question about the passage with yes or no only."
SYSTEM_NUMERIC = (
    "Solve the math word problem. Reply with the final numeric answer only, no words, no units."
)
SYSTEM_SHORT = "Answer the trivia question with a few words only: the name, place or thing."
SYSTEM_CODE = (
    "Complete the Python function. Reply with the whole function (signature and body) in one "
    "```python code block, and nothing else."
)
_LISTED = re.compile(r"^\s*A[.)]\s", re.MULTILINE)


def _strip_answer_cue(text: str) -> str:
    return re.sub(r"\n?\s*Answer:\s*$", "", text.rstrip()).rstrip()


def mc_prompt(query: str, choices: list[str]) -> str:
    """The question with its choices lettered (unless the query already lists them)."""
    body = _strip_answer_cue(query)
    already = all(len(c.strip()) == 1 for c in choices) and _LISTED.search(body)
    if not already:
        listed = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
        body = f"{body}\n{listed}"
    return f"{body}\nAnswer with the letter ({', '.join(LETTERS[: len(choices)])})."


def _number(text: str) -> float | None:
    try:
        return float(str(text).replace(",", "").strip())
    except ValueError:
        return None


def question_from(task: str, row: dict[str, Any], where: str) -> Question:
    """One question from a JSON object; :class:`TaskFileError` if its shape is unknown."""
    if "test" in row and "entry_point" in row and "prompt" in row:
        prompt = str(row["prompt"])
        return Question(
            _qid(task, prompt),
            task,
            "code",
            prompt,
            SYSTEM_CODE,
            MAX_TOKENS["code"],
            str(row["test"]),
            entry_point=str(row["entry_point"]),
            code_prompt=prompt,
        )
    if "choices" in row and "gold" in row and "query" in row:
        choices = [str(c) for c in row["choices"]]
        gold = row["gold"]
        if not isinstance(gold, int) or not 0 <= gold < len(choices) or len(choices) > 10:
            raise TaskFileError(f"{where}: gold must index one of up to 10 choices")
        query = str(row["query"])
        if [c.strip().lower() for c in choices] == ["no", "yes"]:
            prompt = f"{_strip_answer_cue(query)}\nAnswer yes or no."
            return Question(
                _qid(task, query),
                task,
                "yesno",
                prompt,
                SYSTEM_YESNO,
                MAX_TOKENS["yesno"],
                gold == 1,
            )
        return Question(
            _qid(task, query),
            task,
            "mc",
            mc_prompt(query, choices),
            SYSTEM_MC,
            MAX_TOKENS["mc"],
            gold,
            extra={"choices": choices},
        )
    if "aliases" in row and "answer" in row:
        context = _strip_answer_cue(str(row.get("context") or row.get("question") or ""))
        aliases = [str(row["answer"]), *[str(a) for a in row["aliases"]]]
        return Question(
            _qid(task, context),
            task,
            "short",
            context,
            SYSTEM_SHORT,
            MAX_TOKENS["short"],
            list(dict.fromkeys(aliases)),
        )
    if "answer" in row and ("context" in row or "question" in row):
        value = _number(str(row["answer"]))
        if value is None:
            raise TaskFileError(f"{where}: 'answer' is not a number")
        context = str(row.get("context") or row.get("question"))
        return Question(
            _qid(task, context),
            task,
            "numeric",
            context,
            SYSTEM_NUMERIC,
            MAX_TOKENS["numeric"],
            value,
        )
    raise TaskFileError(
        f"{where}: unknown question shape (fields: {', '.join(sorted(row))}); expected "
        "query/choices/gold, context/answer, context/answer/aliases or prompt/test/entry_point"
    )


def _qid(task: str, text: str) -> str:
    return f"{task}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def task_name(path: Path) -> str:
    """``tasks/arc_easy/dev.jsonl`` -> ``arc_easy``; ``my_questions.jsonl`` -> ``my_questions``."""
    if path.stem in {"dev", "train", "test", "validation"} and path.parent.name:
        return path.parent.name
    return path.stem


def load_questions(path: Path, limit: int | None = None) -> list[Question]:
    """The first ``limit`` questions of a JSONL task file (all when None)."""
    task = task_name(path)
    found: list[Question] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise TaskFileError(f"{path}: cannot read ({error.strerror})") from None
    for number, line in enumerate(lines, 1):
        if limit is not None and len(found) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise TaskFileError(f"{path}:{number}: not JSON") from None
        if not isinstance(row, dict):
            raise TaskFileError(f"{path}:{number}: each line must be a JSON object")
        found.append(question_from(task, row, f"{path}:{number}"))
    return found


# -- extraction ---------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _clean(text: str) -> str:
    return _THINK.sub("", text or "").strip()


def extract_choice(text: str, choices: list[str]) -> int | None:
    """The chosen option's index: a letter in a recognisable place, else a choice's text."""
    text = _clean(text)
    if not text:
        return None
    letters = LETTERS[: len(choices)]
    patterns = [
        rf"^\W*([{letters}])\W*$",  # just the letter
        rf"(?:answer|option|choice)\s*(?:is|:)?\s*\(?\**([{letters}])\b",
        rf"^\W*\(?([{letters}])[.):\]](?:\s|$)",  # "B. text" / "(B)" at the start
        rf"^\W*([{letters}])\s*$",
        rf"\(([{letters}])\)",
        rf"^([{letters}])\b",
    ]
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
        if match:
            letter = match.group(1).upper()
            if pattern.startswith("^([") and match.group(1) != letter:
                continue  # a lower-case word start like "a cat" is not option A
            return letters.index(letter)
    lowered = text.lower()
    named = [
        i
        for i, choice in enumerate(choices)
        if len(choice.strip()) > 1 and choice.strip().lower().rstrip(".") in lowered
    ]
    if len(named) == 1:
        return named[0]
    return None


def extract_yesno(text: str) -> bool | None:
    words = re.findall(r"[a-z]+", _clean(text).lower())
    for word in words[:8]:
        if word in {"yes", "true", "correct"}:
            return True
        if word in {"no", "false", "incorrect"}:
            return False
    return None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_number(text: str) -> float | None:
    """The last number in the text (``1,234.5`` reads as 1234.5; a trailing ``.`` is dropped)."""
    text = _clean(text)
    marked = re.search(r"(?:####|answer is|answer:)\s*\$?\s*(-?[\d,]*\.?\d+)", text, re.I)
    if marked:
        value = _number(marked.group(1))
        if value is not None:
            return value
    for match in reversed(_NUMBER.findall(text)):
        value = _number(match.rstrip(".").rstrip(","))
        if value is not None:
            return value
    return None


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d"})


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


# -- scoring ------------------------------------------------------------------------------------


def score_text(question: Question, text: str) -> Score:
    """Score a non-code answer; code goes through :func:`podium.eval.sandbox.run_tests`."""
    if question.kind == "mc":
        choice = extract_choice(text, question.extra["choices"])
        if choice is None:
            return Score(False, False, None, "no choice could be read")
        return Score(choice == question.gold, True, LETTERS[choice])
    if question.kind == "yesno":
        said = extract_yesno(text)
        if said is None:
            return Score(False, False, None, "neither yes nor no")
        return Score(said == question.gold, True, "yes" if said else "no")
    if question.kind == "numeric":
        value = extract_number(text)
        if value is None:
            return Score(False, False, None, "no number")
        gold = float(question.gold)
        ok = abs(value - gold) <= max(1e-4, 1e-4 * abs(gold))
        return Score(ok, True, f"{value:g}")
    if question.kind == "short":
        reply = normalise(_clean(text).split("\n")[0])
        if not reply:
            return Score(False, False, None, "empty answer")
        for alias in question.gold:
            name = normalise(alias)
            if name and (reply == name or re.search(rf"\b{re.escape(name)}\b", reply)):
                return Score(True, True, reply)
        return Score(False, True, reply)
    raise ValueError(f"score_text cannot score {question.kind!r} questions")
