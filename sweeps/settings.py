"""Every setting a sweep takes, with its type, default and documentation, from the config
dataclasses themselves (``sweeps/config.py``, ``trainables/config.py``): the field docstrings are
the reference.

    python -m sweeps.settings             # a table in the terminal
    python -m sweeps.settings --markdown  # docs/configuration.md

Trial settings are named as ``--set`` takes them (``train.lr``, ``adapter.r``); sweep
settings by their own path (``scheduler.groups``, ``search.num_samples``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, get_type_hints


@dataclass(frozen=True)
class Setting:
    key: str
    """As a preset or ``--set`` names it (trial settings without ``trial.``)."""
    kind: str
    default: Any
    doc: str
    section: str
    """``sweep``, ``trial`` or the settings group (``train``, ``scheduler``, ...)."""
    flag: str = ""
    """The command-line flag that sets it too, if any."""


def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass's source (its attribute docstring)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return None if dataclasses.is_dataclass(value) else value
    return None


def settings(cls: type | None = None, prefix: str = "", section: str = "sweep",
             path: str = "") -> list[Setting]:
    """Every leaf setting of ``cls`` (default: SweepConfig), depth first, in source order."""
    from sweeps.study_file import FLAG_SETTINGS
    from sweeps.config import SweepConfig
    from trainables.schema import _describe

    cls = cls or SweepConfig
    flags = {dotted: f"--{flag.replace('_', '-')}" for flag, dotted in FLAG_SETTINGS.items()}
    hints, docs = get_type_hints(cls), field_docs(cls)
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            trial = cls is SweepConfig and f.name == "trial"
            out += settings(tp, "" if trial else f"{prefix}{f.name}.", "trial" if trial else f.name,
                            f"{path}{f.name}.")
        elif not (cls is SweepConfig and f.name in ("study", "overrides")):
            out.append(Setting(f"{prefix}{f.name}", _describe(tp), _default(f), _plain(docs.get(f.name, "")),
                               section, flags.get(f"{path}{f.name}", "")))
    return out


def _plain(doc: str) -> str:
    """Docstring markup as Markdown: ``x`` and :role:`x` become `x`."""
    import re

    return re.sub(r":\w+:`([^`]+)`", r"`\1`", doc).replace("``", "`")


def _value(v: Any) -> str:
    return "null" if v is None else json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)


def markdown() -> str:
    lines = ["# Configuration reference", "",
             "Every setting of a sweep, generated from the field documentation of the config "
             "dataclasses in `sweeps/config.py` and `trainables/config.py` by `python -m sweeps.settings --markdown`. "
             "Set any of them in a preset, or on the command line with `--set KEY=VALUE` "
             "(trial settings such as `train.lr`; sweep settings such as `scheduler.groups`).", ""]
    titles = {"sweep": "The sweep", "trial": "The trial"}
    found = settings()
    order = {name: i for i, name in enumerate(dict.fromkeys(s.section for s in found))}
    section = None
    for s in sorted(found, key=lambda s: order[s.section]):
        if s.section != section:
            section = s.section
            lines += ["", f"## {titles.get(section, f'`{section}`')}", "",
                      "| setting | flag | type | default | what it does |", "|---|---|---|---|---|"]
        doc = s.doc.replace("|", "\\|")
        flag = f"`{s.flag}`" if s.flag else ""
        lines.append(f"| `{s.key}` | {flag} | {s.kind} | `{_value(s.default)}` | {doc} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from sweeps.cli import _Parser

    p = _Parser(prog="python -m sweeps.settings", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--markdown", action="store_true", help="the Markdown reference (docs/configuration.md)")
    args = p.parse_args(argv)
    try:
        if args.markdown:
            sys.stdout.write(markdown())
            return 0
        for s in settings():
            flag = f"; {s.flag}" if s.flag else ""
            print(f"{s.key}  ({s.kind}; default {_value(s.default)}{flag})")
            if s.doc:
                print(textwrap.fill(s.doc, width=100, initial_indent="    ", subsequent_indent="    "))
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head` read what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
