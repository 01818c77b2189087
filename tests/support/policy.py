"""Write policy files for tests, so no test hand-formats TOML twice."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON-compatible here
    raise TypeError(f"cannot write {value!r} as TOML")


@dataclass
class RebuilderEntry:
    """One [[rebuilder]] table; extra keys go through verbatim."""

    name: str
    url: str
    keys: Sequence[Path] = ()
    layout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> dict[str, Any]:
        t: dict[str, Any] = {"name": self.name, "url": self.url}
        if self.layout:
            t["layout"] = self.layout
        if self.keys:
            t["keys"] = [str(k) for k in self.keys]
        t.update(self.extra)
        return t


def render_policy(top: dict[str, Any], rebuilders: Sequence[RebuilderEntry | dict[str, Any]] = (),
                  tables: dict[str, dict[str, Any]] | None = None,
                  arrays: dict[str, Sequence[dict[str, Any]]] | None = None) -> str:
    """TOML text: top-level keys, [tables], then [[arrays]] and [[rebuilder]]s."""
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for name, table in (tables or {}).items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    all_arrays = dict(arrays or {})
    all_arrays["rebuilder"] = [r.table() if isinstance(r, RebuilderEntry) else r for r in rebuilders]
    for name, items in all_arrays.items():
        for item in items:
            lines += ["", f"[[{name}]]"] + [f"{k} = {_toml(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def write_policy(path: Path, rebuilders: Sequence[RebuilderEntry | dict[str, Any]], *,
                 threshold: int = 1, log: Path | None = None, fetch: dict[str, Any] | None = None,
                 tables: dict[str, dict[str, Any]] | None = None,
                 arrays: dict[str, Sequence[dict[str, Any]]] | None = None, **top: Any) -> Path:
    """A policy for tests: no cache, short timeouts, the decision log in the tmp dir.

    ``fetch`` entries override the test defaults; ``top`` adds top-level keys
    (``max_conflicts``, ``mode``, ``gate_unlisted``...).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fetch_table = {"cache_dir": "", "connect_timeout": 2.0, "read_timeout": 2.0, "deadline": 5.0}
    fetch_table.update(fetch or {})
    all_tables = {"fetch": fetch_table, **(tables or {})}
    head = {"threshold": threshold, "log": str(log or path.parent / "decisions.log"), **top}
    path.write_text(render_policy(head, rebuilders, all_tables, arrays))
    return path
