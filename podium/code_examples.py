"""Checking a code answer against the examples in its own prompt.

A coding request often carries its own tests: the function's docstring shows calls and their
results, as doctest examples (``>>> add(2, 3)`` then ``5``) or in prose (``add(2, 3) => 5``,
``add(2, 3) == 5``, ``add(2, 3) should return 5.``). Running a drafted function against
those examples tells a draft that is wrong from one that may be right, without asking a second
model; the ``examples`` checker (:mod:`podium.providers.examples`) does that for a cascade's
check step. The evaluation reads code answers with the same helpers.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from podium.sandbox import RunResult, run_python

FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

# Appended to the program under test: runs each example in order and stops at the first that
# fails, saying how on a line of its own; when all pass, it says so last (a program that exits
# early, before the examples ran, has not passed them).
MARK = "@@podium-example "
RUN_EXAMPLES = """

import ast as _ast, json as _json, sys as _sys
for _call, _expected, _by_value in _json.loads({examples!r}):
    _failure = None
    try:
        _got = eval(_call)
        _ok = (
            bool(_got == _ast.literal_eval(_expected))
            if _by_value
            else " ".join(repr(_got).split()) == " ".join(_expected.split())
        )
        if not _ok:
            _failure = dict(call=_call, expected=_expected, got=repr(_got)[:200])
    except Exception as _error:
        _failure = dict(call=_call, error=f"{{type(_error).__name__}}: {{_error}}"[:200])
    if _failure is not None:
        print("\\n" + {mark!r} + _json.dumps(_failure))
        _sys.exit(1)
print("\\n" + {mark!r} + "passed")
"""
# ``name(args) => result``, and the other ways docstrings write an example in prose.
PROSE_EXAMPLE = re.compile(
    r"^\s*(?P<call>[A-Za-z_]\w*\(.*\))\s*(?:=>|==|->|\u279e|\u2192|should\s+return|returns?)"
    r"\s*(?P<result>.+?)\s*$"
)
BARE_WORDS = {"true": True, "false": False, "none": None, "null": None}
# Builtins an example may wrap the call in (``round(f(x), 2)``, ``sorted(f(x))``).
SAFE_BUILTINS = frozenset(
    {
        *("abs", "all", "any", "bool", "dict", "float", "frozenset", "int", "len", "list"),
        *("max", "min", "reversed", "round", "set", "sorted", "str", "sum", "tuple"),
    }
)


@dataclass(frozen=True, slots=True)
class Example:
    """A call and what it should give: ``expected`` is a literal's repr, compared by value
    (``by_value``), or the output a docstring shows, compared as text up to whitespace."""

    call: str
    expected: str
    by_value: bool = True


@dataclass(frozen=True, slots=True)
class ExampleFunction:
    """The function a prompt asks for: its source as given (signature and docstring, maybe
    imports and helpers), its name, and its docstring's examples."""

    code_prompt: str
    name: str
    examples: tuple[Example, ...]


@dataclass(frozen=True, slots=True)
class ExamplesVerdict:
    accept: bool
    reason: str


def code_blocks(text: str) -> list[str]:
    return FENCED.findall(text or "")


def reply_code(reply: str) -> str:
    """The code of a model's reply: its longest fenced block, else the whole reply."""
    blocks = code_blocks(reply)
    return max(blocks, key=len) if blocks else (reply or "")


def answer_program(answer: str, code_prompt: str, entry_point: str) -> str:
    """The program a code answer stands for: its code (:func:`reply_code`); a body without its
    ``def`` line is appended to the prompt, and a whole definition follows the prompt's own
    imports and helpers."""
    code = reply_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return f"{code_prompt.rstrip()}\n    pass\n\n\n{code}"
    return code_prompt + code


# Python's parser gives up on deeply nested input with MemoryError or RecursionError: a prompt
# it cannot parse has no examples, whatever its shape.
PARSE_ERRORS = (SyntaxError, ValueError, MemoryError, RecursionError)


def _parsed(source: str) -> ast.Module | None:
    # A prompt usually stops after the docstring: the function has no body yet.
    for attempt in (source.rstrip() + "\n    pass\n", source):
        try:
            return ast.parse(attempt)
        except PARSE_ERRORS:
            continue
    return None


_UNREADABLE = object()


def _literal(text: str) -> Any:
    """A Python literal written in prose: ``16.`` (a sentence's full stop), ``true``."""
    for candidate in (text[:-1], text) if text.endswith(".") else (text,):
        try:
            return ast.literal_eval(candidate)
        except (*PARSE_ERRORS, TypeError):
            pass
        word = candidate.strip().lower()
        if word in BARE_WORDS:
            return BARE_WORDS[word]
    return _UNREADABLE


def _call_source(call: str, name: str) -> str | None:
    """``call`` as one clean expression (comments dropped) when it calls ``name`` on literals,
    maybe inside builtins (``round(find_zero([1, 2]), 2)``), and names nothing else; else
    None: ``is_happy(a)`` does not qualify (the prose meant a string)."""
    try:
        tree = ast.parse(call, mode="eval")
    except PARSE_ERRORS:
        return None
    calls_it = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id != name and node.id not in SAFE_BUILTINS:
                return None
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls_it = calls_it or node.func.id == name
    return ast.unparse(tree.body) if calls_it else None


def _example(source: str, want: str, name: str, *, shown_text: bool) -> Example | None:
    """One example, or None when it cannot be read. A literal result is
    compared by value (``'21'`` equals ``"21"``); a comparison with no output shown
    (``f(x) == 3``) must come out true. Any other result is compared as text where the
    docstring shows output (``shown_text``), and left out of prose, which is too loose."""
    if not want:
        try:
            node = ast.parse(source, mode="eval").body
        except PARSE_ERRORS:
            return None
        if not (isinstance(node, ast.Compare) and [type(op) for op in node.ops] == [ast.Eq]):
            return None
        source, want = ast.unparse(node.left), ast.unparse(node.comparators[0])
        shown_text = False
    call = _call_source(source, name)
    if call is None:
        return None
    expected = _literal(want)
    if expected is _UNREADABLE:
        return Example(call, want, by_value=False) if shown_text else None
    return Example(call, repr(expected))


def read_examples(docstring: str, name: str) -> tuple[Example, ...]:
    """The docstring's examples of calls to ``name`` with literal arguments: ``>>>`` lines
    with the output that follows them, and prose lines such as ``f(2) => 4``. Lines are read
    one by one, whatever their indentation; an example that cannot be read is left out (a
    check skips what it cannot run)."""
    lines = [line.strip() for line in docstring.splitlines()]
    examples: list[Example] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        example: Example | None = None
        if line.startswith(">>>"):
            shown: list[str] = []
            while index < len(lines) and lines[index] and not lines[index].startswith(">>>"):
                shown.append(lines[index])
                index += 1
            example = _example(line[3:].strip(), " ".join(shown), name, shown_text=True)
        else:
            found = PROSE_EXAMPLE.match(line)
            if found is not None:
                example = _example(found["call"], found["result"], name, shown_text=False)
        if example is not None:
            examples.append(example)
    return tuple(examples)


def find_examples(prompt: str) -> ExampleFunction | None:
    """The last function in the prompt (a fenced block, or the prompt itself) whose docstring
    holds examples; None when there is none."""
    found: ExampleFunction | None = None
    for source in [*code_blocks(prompt), prompt]:
        if "def " not in source:
            continue
        tree = _parsed(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                examples = read_examples(ast.get_docstring(node) or "", node.name)
                if examples:
                    found = ExampleFunction(source, node.name, examples)
        if found is not None:
            return found
    return None


def _failure(output: str) -> str:
    """Why the examples failed, for the verdict's reason (a repair step reads it): the first
    failing example and what it gave, or the error that stopped the program."""
    marked = output.rpartition(MARK)[2] if MARK in output else ""
    try:
        failed = json.loads(marked.splitlines()[0]) if marked else None
    except ValueError:
        failed = None
    if isinstance(failed, dict):
        if "error" in failed:
            return f"{failed['call']} raised {failed['error']}"
        return f"{failed['call']} gave {failed['got']}; expected {failed['expected']}"
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return f"the code did not run: {lines[-1][:200]}" if lines else "the code did not run"


def verdict_for(result: RunResult, examples: int) -> ExamplesVerdict:
    if result.timed_out:
        return ExamplesVerdict(False, "the examples did not finish in time")
    if result.returncode == 0 and f"{MARK}passed" in result.output:
        return ExamplesVerdict(True, f"all {examples} examples in the docstring passed")
    return ExamplesVerdict(False, _failure(result.output))


def check_program(prompt: str, draft: str) -> tuple[str, int] | None:
    """The program that runs ``draft`` against ``prompt``'s docstring examples, and how many
    examples it runs; None when the prompt has none."""
    function = find_examples(prompt)
    if function is None:
        return None
    program = answer_program(draft, function.code_prompt, function.name)
    examples = json.dumps([[e.call, e.expected, e.by_value] for e in function.examples])
    return program + RUN_EXAMPLES.format(examples=examples, mark=MARK), len(function.examples)


async def check_draft(prompt: str, draft: str, *, seconds: float) -> ExamplesVerdict:
    """Run ``draft`` (a code answer to ``prompt``) against the prompt's docstring examples.
    Anything short of every example passing rejects, so a cascade escalates."""
    found = check_program(prompt, draft)
    if found is None:
        return ExamplesVerdict(False, "the request has no docstring examples to run")
    program, examples = found
    # as a module of its own: a demo under ``if __name__ == "__main__":`` does not run
    result = await run_python(program, seconds=seconds, module_name="solution")
    return verdict_for(result, examples)
