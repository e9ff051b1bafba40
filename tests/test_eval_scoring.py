"""Scoring rules of the live evaluation, on questions in the shared task formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podium.code_examples import answer_program
from podium.eval.scoring import (
    TaskFileError,
    extract_choice,
    extract_number,
    load_questions,
    normalise,
    question_from,
    score_text,
    task_name,
)

ARC = {
    "choices": ["meter.", "kilometer.", "light-year.", "astronomical unit."],
    "query": "Question: To express the distance between the Milky Way galaxy and other galaxies, "
    "the most appropriate unit of measurement is the",
    "gold": 2,
}
CSQA = {
    "query": "Question: What island country is ferret popular?\nChoices:\nA. own home\n"
    "B. north carolina\nC. great britain\nD. outdoors\nAnswer:",
    "choices": ["A", "B", "C", "D"],
    "gold": 2,
}
COPA = {
    "query": "The student misspelled the word, therefore",
    "gold": 0,
    "choices": ["the teacher corrected her.", "the teacher dismissed her."],
}
BOOLQ = {
    "query": "Passage: Harry Potter and the Escape from Gringotts is an indoor steel roller "
    "coaster at Universal Studios Florida.\nQuestion: is harry potter and the escape from "
    "gringotts a roller coaster ride?",
    "choices": ["no", "yes"],
    "gold": 1,
}
SVAMP = {
    "context": "Paco had 25 cookies. He ate 5 of them. Then he bought 3 more cookies How many "
    "more cookies did he eat than those he bought?",
    "chain_of_thought": "( 5.0 - 3.0 )",
    "answer": "2",
}
GSM8K = {
    "context": "Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many "
    "sheep as Seattle. How many sheep do Toulouse, Charleston, and Seattle have together if "
    "Seattle has 20 sheep?",
    "chain_of_thought": "...",
    "answer": "260",
}
TRIVIA = {
    "context": "Question: What type of animal is a dik-dik?\nAnswer:",
    "answer": "Antelope",
    "aliases": ["Botswanan Antelopes", "Antelope", "Antilopina", "Antelopes"],
}
HUMAN_EVAL = {
    "task_id": "HumanEval/0",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
    "entry_point": "add",
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
}


def test_multiple_choice_prompt_letters_the_choices_and_scores_the_letter() -> None:
    question = question_from("arc_easy", ARC, "arc:1")
    assert question.kind == "mc"
    assert "C. light-year." in question.prompt
    assert question.prompt.rstrip().endswith("Answer with the letter (A, B, C, D).")
    assert score_text(question, "C").correct
    assert score_text(question, "The answer is (C) light-year").correct
    assert score_text(question, "C. light-year.").correct
    assert not score_text(question, "B").correct
    assert score_text(question, "light-year").correct  # the choice's text, unambiguous


def test_choices_already_listed_in_the_query_are_not_listed_twice() -> None:
    question = question_from("commonsense_qa", CSQA, "csqa:1")
    assert question.prompt.count("C. great britain") == 1
    assert "Answer:" not in question.prompt
    assert score_text(question, "C").correct
    assert score_text(question, "Answer: C").correct
    assert not score_text(question, "A. own home").correct


def test_two_choice_copa_is_multiple_choice() -> None:
    question = question_from("copa", COPA, "copa:1")
    assert question.kind == "mc" and "B. the teacher dismissed her." in question.prompt
    assert score_text(question, "A").correct


def test_unparseable_multiple_choice_answers_score_zero_and_say_so() -> None:
    question = question_from("arc_easy", ARC, "arc:1")
    for garbage in [
        "",
        "   ",
        "I'm sorry, I cannot help with that.",
        "zzzz qqq",
        "<think>C</think>",
    ]:
        score = score_text(question, garbage)
        assert not score.correct and not score.parsed, garbage
    # a lower-case article is not option A
    assert extract_choice("a unit of length", ["x", "y"]) is None


def test_boolq_is_yes_no() -> None:
    question = question_from("boolq", BOOLQ, "boolq:1")
    assert question.kind == "yesno" and question.gold is True
    assert score_text(question, "Yes.").correct
    assert score_text(question, "yes, it is a roller coaster").correct
    assert not score_text(question, "No").correct
    assert not score_text(question, "It is unclear").parsed


def test_numeric_answers_take_the_last_number() -> None:
    svamp = question_from("svamp", SVAMP, "svamp:1")
    gsm8k = question_from("gsm8k", GSM8K, "gsm8k:1")
    assert svamp.kind == gsm8k.kind == "numeric"
    assert score_text(svamp, "2").correct
    assert score_text(svamp, "He ate 5 and bought 3, so 5 - 3 = 2.").correct
    assert score_text(gsm8k, "20 + 80 + 160 = 260 sheep").correct
    assert score_text(gsm8k, "The answer is 260.0").correct
    assert not score_text(gsm8k, "261").correct
    assert not score_text(gsm8k, "many sheep").parsed
    assert extract_number("$1,234.50 in total") == 1234.5
    assert extract_number("#### 72\nsome trailing 9") == 72


def test_short_answers_match_aliases_after_normalising() -> None:
    question = question_from("triviaqa_sm_sub", TRIVIA, "trivia:1")
    assert question.kind == "short" and "Answer:" not in question.prompt
    assert score_text(question, "Antelope").correct
    assert score_text(question, "an antelope.").correct
    assert score_text(question, "A dik-dik is a small antelope.").correct
    assert score_text(question, "ANTELOPES").correct
    assert not score_text(question, "A type of bird").correct
    assert not score_text(question, "").parsed
    assert normalise("The  Beatles!") == "beatles"


def test_code_questions_keep_the_prompt_for_a_bare_body() -> None:
    question = question_from("human_eval", HUMAN_EVAL, "he:1")
    assert question.kind == "code" and question.entry_point == "add"
    body = answer_program("```python\n    return a + b\n```", HUMAN_EVAL["prompt"], "add")
    assert body.startswith("def add") and "return a + b" in body
    whole = answer_program(
        "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n", HUMAN_EVAL["prompt"], "add"
    )
    assert whole.rstrip().endswith("return a + b")
    with pytest.raises(ValueError, match="cannot score 'code'"):
        score_text(question, "def add(a, b): return a + b")


def test_task_files_load_with_stable_ids_and_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "arc_easy"
    folder.mkdir()
    path = folder / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [ARC, CSQA, COPA]) + "\n")
    questions = load_questions(path, limit=2)
    assert [q.task for q in questions] == ["arc_easy", "arc_easy"]
    assert questions[0].qid == load_questions(path)[0].qid
    assert task_name(tmp_path / "mine.jsonl") == "mine"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q"}\n')
    with pytest.raises(TaskFileError, match=r"bad.jsonl:1: unknown question shape"):
        load_questions(bad)
    bad.write_text("not json\n")
    with pytest.raises(TaskFileError, match="not JSON"):
        load_questions(bad)
    bad.write_text(json.dumps({**ARC, "gold": 9}) + "\n")
    with pytest.raises(TaskFileError, match="gold must index"):
        load_questions(bad)
