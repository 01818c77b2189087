"""The README's attack table names real tests.

Each row of "Attacks and defences" promises that a named test fails if the
defence is removed; a row naming a test that was renamed or moved promises
nothing.  Every `file.py::test_name` (and a bare `::test_name` after it, which
means the same file) must name a test function that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIXES = {"H/": "tests/hostile/", "C/": "tests/common/"}
REFERENCE = re.compile(r"`((?:H/|C/|tests/)[\w/]+\.py)?::(test_\w+)")


def references(text: str) -> list[tuple[str, str]]:
    out, current = [], None
    for match in REFERENCE.finditer(text):
        if match.group(1):
            current = match.group(1)
            for short, long in PREFIXES.items():
                if current.startswith(short):
                    current = long + current[len(short):]
        assert current is not None, f"`::{match.group(2)}` names no file before it"
        out.append((current, match.group(2)))
    return out


def test_every_test_the_readme_names_exists() -> None:
    refs = references((ROOT / "README.md").read_text())
    assert len(refs) > 100  # the attack table is there and was parsed
    missing = [f"{path}::{name}" for path, name in refs
               if not (ROOT / path).is_file()
               or not re.search(rf"^\s*(async )?def {name}\b", (ROOT / path).read_text(), re.M)]
    assert not missing, "README names tests that do not exist: " + ", ".join(missing)


def test_reference_parser_follows_bare_names_to_their_file() -> None:
    text = "`C/test_a.py::test_x`, `::test_y`; `tests/conformance/test_b.py::test_z`"
    assert references(text) == [("tests/common/test_a.py", "test_x"), ("tests/common/test_a.py", "test_y"),
                                ("tests/conformance/test_b.py", "test_z")]
