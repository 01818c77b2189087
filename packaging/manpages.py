#!/usr/bin/python3
"""rebuildgate(1), rebuildgate-policy(5) and the example policy, from one source.

The source is what the project already keeps exact: the argparse parser of
the ``rebuildgate`` command (every command, option and help text) and the
README's reference sections (``The rebuildgate command``, ``Policy
reference`` with ``Repository ids``, ``Where evidence is looked up``,
``Fetching``, and ``Halt flags``).  The README's policy example is written
out as ``examples/policy.toml``.  Markdown is turned into man(7) roff by the
small converter below: headings, paragraphs, lists, tables, code blocks,
inline code and emphasis, which is all the README uses.

``manpages.py OUTDIR [EXAMPLES_DIR]`` writes ``OUTDIR/man1/rebuildgate.1``,
``OUTDIR/man5/rebuildgate-policy.5`` (and the example).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
COMMAND_SECTIONS = ("The `rebuildgate` command",)
POLICY_SECTIONS = ("Policy reference", "Halt flags")
_INLINE_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_EM = re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])")
_ITEM = re.compile(r"^(\s*)([-*]|\d+\.) +(.*)$")


def _date() -> str:
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    when = _dt.datetime.fromtimestamp(int(stamp), _dt.timezone.utc) if stamp else _dt.datetime.now(_dt.timezone.utc)
    return when.strftime("%Y-%m-%d")


def escape(text: str) -> str:
    """Plain text for roff: backslashes and hyphens escaped."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def inline(text: str) -> str:
    """One Markdown line -> roff text (code bold, emphasis italic, links as their text)."""
    out, last = [], 0
    for m in _INLINE_CODE.finditer(text):
        out.append(_prose(text[last:m.start()]))
        out.append("\\fB" + escape(m.group(1)) + "\\fR")
        last = m.end()
    out.append(_prose(text[last:]))
    return _line_start("".join(out))


def _prose(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(1) if m.group(2).startswith("#") else f"{m.group(1)} <{m.group(2)}>", text)
    text = escape(text.replace("\\|", "|"))
    text = _BOLD.sub(lambda m: "\\fB" + m.group(1) + "\\fR", text)
    return _EM.sub(lambda m: "\\fI" + m.group(1) + "\\fR", text)


def _line_start(text: str) -> str:
    return "\\&" + text if text.startswith((".", "'")) else text


def _cells(row: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", row.strip())
    return [p.strip() for p in parts[1:-1]]


def markdown(md: str, top: int = 2) -> list[str]:
    """Markdown -> roff lines; headings of level *top* become .SH, deeper ones .SS."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0

    def paragraph() -> None:
        if out and out[-1] not in (".PP",) and not out[-1].startswith((".SH", ".SS")):
            out.append(".PP")

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            i += 1
            paragraph()
            out += [".RS 4", ".nf"] + [_line_start(escape(b)) for b in block] + [".fi", ".RE"]
            continue
        heading = re.match(r"^(#+) +(.*)$", line)
        if heading:
            level = len(heading.group(1))
            title = inline(heading.group(2))
            out.append(f'.SH "{title.upper()}"' if level <= top else f'.SS "{title}"')
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            header, body = rows[0], rows[2:]
            for row in body:
                out += [".TP", inline(row[0])]
                out.append(_line_start("; ".join(f"{inline(h)}: {inline(c)}" if h else inline(c)
                                                 for h, c in zip(header[1:], row[1:]) if c)))
            paragraph()
            continue
        item = _ITEM.match(line)
        if item:
            text = [item.group(3)]
            i += 1
            while i < len(lines) and lines[i].strip() and lines[i].startswith(" ") and not _ITEM.match(lines[i]) \
                    and not lines[i].lstrip().startswith("```"):
                text.append(lines[i].strip())
                i += 1
            bullet = "\\(bu" if item.group(2) in "-*" else item.group(2)
            out += [f".IP {bullet} 4", inline(" ".join(text))]
            continue
        if not line.strip():
            paragraph()
            i += 1
            continue
        text = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "```")) \
                and not _ITEM.match(lines[i]):
            text.append(lines[i].strip())
            i += 1
        out.append(inline(" ".join(text)))
    while out and out[-1] == ".PP":
        out.pop()
    return out


def sections(md: str, titles: tuple[str, ...]) -> str:
    """The README's ``##`` sections whose titles start with one of *titles* (with their subsections)."""
    chunks, keep = [], False
    in_code = False
    for line in md.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("## "):
            keep = line[3:].startswith(titles)
        if keep:
            chunks.append(line)
    return "\n".join(chunks)


def example_policy(md: str) -> str:
    """The first toml block of the policy reference: the commented example."""
    text = sections(md, ("Policy reference",))
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block, "README: no toml example in the policy reference"
    return ("# An example rebuildgate policy (from rebuildgate-policy(5), where every key is explained).\n"
            "# Not loaded from here: `rebuildgate init` writes /etc/rebuildgate/policy.toml, or copy\n"
            "# this file there and edit it; `rebuildgate check-config` says what it trusts.\n\n"
            + block.group(1))


def _header(name: str, section: int, title: str) -> list[str]:
    from rebuildgate import __version__

    return [f'.TH {name.upper()} {section} "{_date()}" "rebuildgate {__version__}" "{title}"',
            ".SH NAME", f"{escape(name)} \\- {escape(DESCRIPTIONS[name])}"]


DESCRIPTIONS = {
    "rebuildgate": "install a package only if M of N trusted rebuilders attest its exact hash",
    "rebuildgate-policy": "the policy file of rebuildgate, /etc/rebuildgate/policy.toml",
}


def _parsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """(command words, parser) for every subcommand, depth first."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subparsers here only
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help for a in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                words = f"{prefix} {name}".strip()
                yield words, sub, helps.get(name, "")
                yield from _parsers(sub, words)


def command_page() -> str:
    from rebuildgate.cli import build_parser

    parser = build_parser()
    out = _header("rebuildgate", 1, "rebuildgate manual")
    out += [".SH SYNOPSIS", ".nf"]
    out += [_line_start(escape(f"rebuildgate {words} ...")) for words, sub, _ in _parsers(parser)
            if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)]  # noqa: SLF001
    out += ["rebuildgate \\-\\-version", ".fi", ".SH DESCRIPTION", escape(parser.description or "")]
    out += markdown(sections(README.read_text(), COMMAND_SECTIONS))
    out.append(".SH COMMANDS")
    for words, sub, helptext in _parsers(parser):
        out += [f'.SS "rebuildgate {escape(words)}"', _line_start(escape(helptext or "")), ".PP", ".nf"]
        usage = sub.format_usage().replace("usage: ", "", 1).rstrip()
        out += [_line_start(escape(line)) for line in usage.splitlines()] + [".fi"]
        for action in sub._actions:  # noqa: SLF001
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
                continue
            names = ", ".join(action.option_strings) or (action.metavar if isinstance(action.metavar, str)
                                                         else action.dest.upper())
            metavar = action.metavar if isinstance(action.metavar, str) else (
                " ".join(action.metavar) if isinstance(action.metavar, tuple) else action.dest.upper())
            if action.option_strings and action.nargs != 0:
                names += f" {metavar}"
            out += [".TP", f"\\fB{escape(names)}\\fR", _line_start(escape(action.help or ""))]
    out += [".SH FILES", ".TP", "/etc/rebuildgate/policy.toml", "the policy (rebuildgate\\-policy(5))",
            ".TP", "/var/log/rebuildgate/decisions.log", "the decision log, one JSON line per verdict",
            ".TP", "/var/lib/rebuildgate", "halt state; backups of sources switched by enable/disable",
            ".TP", "/var/cache/rebuildgate", "fetched evidence (re\\-verified on every use)",
            ".SH SEE ALSO", "rebuildgate\\-policy(5), apt\\-get(8), sources.list(5), dnf(8)"]
    return "\n".join(out) + "\n"


def policy_page() -> str:
    out = _header("rebuildgate-policy", 5, "rebuildgate manual")
    out += [".SH DESCRIPTION",
            "One TOML file drives the APT method, apt's pre\\-install hook, the DNF plugin and the "
            "\\fBrebuildgate\\fR command.  \\fBrebuildgate init\\fR writes one; \\fBrebuildgate check\\-config\\fR "
            "says what it trusts."]
    out += markdown(sections(README.read_text(), POLICY_SECTIONS))
    out += [".SH SEE ALSO", "rebuildgate(1)"]
    return "\n".join(out) + "\n"


def write_all(mandir: Path, examples: Path | None = None) -> list[Path]:
    pages = {mandir / "man1" / "rebuildgate.1": command_page(),
             mandir / "man5" / "rebuildgate-policy.5": policy_page()}
    if examples is not None:
        pages[examples / "policy.toml"] = example_policy(README.read_text())
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    return list(pages)


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None):
        print(written)
