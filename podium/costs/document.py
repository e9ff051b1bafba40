"""A small document model (headings, paragraphs, lists, tables, code, images) rendered to
Markdown and to self-contained HTML, so the memo is written once and reads the same in both."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class Heading:
    text: str
    level: int = 2


@dataclass(slots=True)
class Para:
    text: str  # **bold** and `code` allowed


@dataclass(slots=True)
class Bullets:
    items: list[str]
    ordered: bool = False


@dataclass(slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # columns of numbers


@dataclass(slots=True)
class Code:
    text: str
    language: str = ""


@dataclass(slots=True)
class Image:
    path: Path  # written next to the document
    alt: str


Block = Heading | Para | Bullets | Table | Code | Image


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], base: Path) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append(
                "\n".join(
                    f"{index + 1}. {item}" if block.ordered else f"- {item}"
                    for index, item in enumerate(block.items)
                )
            )
        elif isinstance(block, Table):
            aligns = ["---:" if i in block.right else "---" for i in range(len(block.headers))]
            lines = [
                "| " + " | ".join(_cell(h) for h in block.headers) + " |",
                "| " + " | ".join(aligns) + " |",
            ]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Code):
            out.append(f"```{block.language}\n{block.text.rstrip()}\n```")
        else:
            out.append(f"![{block.alt}]({block.path.relative_to(base).as_posix()})")
    return "\n\n".join(out) + "\n"


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ITALIC = re.compile(r"(?<![\w*])_(.+?)_(?!\w)")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 13px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: .5rem 0; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: images inline (SVG as markup, PNG as base64)."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            tag = "ol" if block.ordered else "ul"
            items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
            out.append(f"<{tag}>{items}</{tag}>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="n">{_inline(c)}</td>'
                    if i in block.right
                    else f"<td>{_inline(c)}</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Code):
            out.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
        else:
            data = block.path.read_bytes()
            if block.path.suffix == ".svg":
                out.append(f'<figure role="img" aria-label="{html.escape(block.alt)}">')
                out.append(data.decode("utf-8").split("?>", 1)[-1])
                out.append("</figure>")
            else:
                encoded = base64.b64encode(data).decode("ascii")
                out.append(
                    f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{encoded}">'
                )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
