"""The shell commands of README.md and docs/**/*.md, read as a shell reads them
(tests/test_docs_commands.py checks each).

A fenced block's commands are its lines (``bash``, ``sh``, ``console``), or in any block its
``$ `` lines, whose following lines are their output; other blocks are output. A command's
words come as the shell would give them to the program: line continuations joined, comments,
redirections, ``timeout`` / ``setsid`` and environment prefixes taken off, ``&&`` / ``;`` /
``|`` chains split, ``[--optional args]`` written out, and a variable set earlier on the same
page (``S="python ..."``, then ``$S --name demo``) expanded. ``cd`` moves the commands after it
in its block; ``export`` sets a variable for those after it on its page.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
WRAPPERS = {"timeout", "setsid", "nohup", "nice"}
PACKAGES = ("sweeps", "trainables", "search_spaces", "analysis")


@dataclass(frozen=True)
class Command:
    """One simple command of a page, as its program receives it."""

    doc: str  # relative to the repository
    line: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # its own: NAME=VALUE before it, or what it exports
    exported: tuple[tuple[str, str], ...] = ()  # by the page's commands before it
    cwd: str | None = "."  # relative to the repository; None: outside it
    output: tuple[str, ...] = ()  # the lines shown after it (``$ `` blocks)
    tail: int | None = None  # piped through ``tail -N``
    comment: str = ""  # the line's ``# ...``
    index: int = 0  # its place among the commands of one line
    entry: bool = False  # the entrypoint of a ``ray job submit``

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}" + (f"+{self.index}" if self.index else "") + (
            " entrypoint" if self.entry else "")

    @property
    def error(self) -> str | None:
        return self.output[0] if self.output and self.output[0].startswith("error: ") else None

    @property
    def kind(self) -> str:
        a = self.argv
        python = a[0] in ("python", "python3")
        if python and len(a) > 1 and a[1].startswith("sweeps/") and a[1].endswith(".py"):
            return "sweep"
        if python and a[1:3] == ("-m", "sweeps.run") or a[:2] == ("lorasweep", "run"):
            return "sweep"
        if python and a[1:2] == ("-m",) and a[2].split(".")[0] in PACKAGES or a[:1] == ("lorasweep",):
            return "tool"
        return "other"


def fenced_blocks(text: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """(language, [(line number, line)]) of every fenced block, dedented to its fence."""
    out, block, lang, indent = [], None, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^(\s*)```(\S*)", line)
        if m and block is None:
            block, lang, indent = [], m.group(2), len(m.group(1))
        elif m:
            out.append((lang, block))
            block = None
        elif block is not None:
            block.append((n, line[indent:] if not line[:indent].strip() else line.strip()))
    return out


def logical_lines(lang: str, lines: list[tuple[int, str]]) -> list[tuple[int, str, list[str]]]:
    """(line, command text, output lines) of a block: ``\\`` continuations joined; in a block
    with ``$ `` prompts only those lines are commands."""
    prompt = any(line.startswith("$ ") for _, line in lines)
    if not prompt and lang not in SHELL_BLOCKS:
        return []
    out: list[tuple[int, str, list[str]]] = []
    i = 0
    while i < len(lines):
        n, text = lines[i]
        i += 1
        if prompt and not text.startswith("$ "):
            if out:
                out[-1][2].append(text)
            continue
        text = text[2:] if prompt else text
        while text.rstrip().endswith("\\") and i < len(lines):
            text = text.rstrip()[:-1] + " " + lines[i][1].strip()
            i += 1
        if text.strip():
            out.append((n, text.strip(), []))
    return out


def split_words(text: str) -> list[str]:
    """Shell words and operators, without redirections; ``$(...)`` is one word, ``[--flag
    value]`` its contents."""
    text = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", text)
    text = re.sub(r"\[(-[^\[\]]*)\]", r"\1", text)
    text = re.sub(r"(^|\s)\d*(>>?|<)(&\d+|\s*[^\s;&|()]+)", " ", text)
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def simple_commands(words: list[str]) -> list[tuple[list[str], int | None]]:
    """The simple commands of a line, each with the N of a ``| tail -N`` after it."""
    out: list[tuple[list[str], int | None]] = []
    current: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if set(w) <= set("&|;()"):
            if current:
                out.append((current, None))
            current = []
            if w == "|" and words[i + 1:i + 2] == ["tail"] and out:
                out[-1] = (out[-1][0], int(words[i + 2].lstrip("-")))
                i += 3
                continue
        else:
            current.append(w)
        i += 1
    return out + ([(current, None)] if current else [])


def unwrap(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """A command without its shell keywords, wrappers (timeout, setsid) and env prefixes."""
    env = []
    while words:
        if words[0] in ("do", "then", "else", "until", "while", "if", "!"):
            words = words[1:]
        elif re.match(r"^[A-Za-z_]\w*=", words[0]):
            env.append(tuple(words.pop(0).split("=", 1)))
        elif words[0] in WRAPPERS:
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in ("-s", "-k", "--signal", "--kill-after", "-n") else words[1:]
            if words and re.fullmatch(r"[\d.]+[smhd]?", words[0]):
                words = words[1:]
        else:
            break
    return words, env


def doc_commands(path: Path) -> list[Command]:
    doc = str(path.relative_to(REPO))
    variables: dict[str, str] = {}
    exported: dict[str, str] = {}
    commands = []
    for lang, lines in fenced_blocks(path.read_text(encoding="utf-8")):
        cwd: str | None = "."
        for line, text, output in logical_lines(lang, lines):
            comment = text.split(" #", 1)[1].strip() if " #" in text else ""
            outer = cwd  # a ``( ... )`` subshell's cd ends with it
            for index, (words, tail) in enumerate(simple_commands(split_words(text))):
                words = [x for w in words for x in (shlex.split(variables[w[1:]]) if w[1:] in variables else [w])]
                argv, env = unwrap(words)
                if argv[:1] == ["export"]:
                    env += [tuple(w.split("=", 1)) for w in argv[1:] if "=" in w]
                if not argv:  # NAME=VALUE: a shell variable for the commands below
                    variables.update(env)
                    continue
                cmd = Command(doc, line, tuple(argv), tuple(env), tuple(exported.items()), cwd, tuple(output),
                              tail, comment, index)
                commands.append(cmd)
                if argv[0] == "export":
                    exported.update(env)
                if "--" in argv and argv[:3] == ["ray", "job", "submit"]:
                    entry = tuple(argv[argv.index("--") + 1:])
                    commands.append(replace(cmd, argv=entry, env=(), entry=True))
                if argv[0] == "cd":
                    target = Path(cwd or "/", argv[1])
                    cwd = str(target) if cwd and not target.is_absolute() and (REPO / target).is_dir() else None
            cwd = outer if text.startswith("(") else cwd
    return commands


COMMANDS = [c for path in DOCS for c in doc_commands(path)]
