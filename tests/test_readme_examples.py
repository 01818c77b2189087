"""The README's examples are run, so they cannot drift from the code.

The policy reference (with the ``[halt]`` example appended) must load, with
its key files replaced by generated ones in a temporary directory and its
paths moved there; every ``[[repository]]`` pattern in it must select its
rule for an id the README's "Repository ids" table says apt or dnf gives;
the table's ids must be what the code computes from the sources lines shown;
and the ``check-config --explain`` example must print what the README shows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rebuildgate import repoid
from rebuildgate.explain import subjects
from rebuildgate.policy import Policy, load_policy

from tests.support.keys import GpgKey, make_key, write_public_key

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
EXAMPLE_FINGERPRINT = "5863835E5EC8E640FA24410F069EDC1D59B58507"
MOVED = ("/etc/rebuildgate", "/var/lib/rebuildgate")


def section(title: str) -> str:
    """The text under the heading *title*, up to the next heading of the same or a
    higher level (``#`` lines inside code blocks are comments, not headings)."""
    out: list[str] = []
    level, fenced = 0, False
    for line in README.splitlines(keepends=True):
        fenced ^= line.startswith("```")
        heading = re.match(r"(#+) (.*)$", line) if not fenced else None
        if level and heading and len(heading.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"README has no section {title!r}"
    return "".join(out)


def code_blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def documented_ids() -> list[tuple[str, str]]:
    """(where the package comes from, repository id) rows of the README's id table."""
    rows = re.findall(r"^\| (.+?) \| `([^`]+)` \|$", section("Repository ids"), re.M)
    assert len(rows) >= 8, rows
    return rows


@pytest.fixture
def readme_policy(tmp_path: Path, gpg_key: GpgKey) -> Path:
    """The policy reference plus the [halt] example, its paths under tmp_path, its keys generated."""
    text = code_blocks(section("Policy reference (`/etc/rebuildgate/policy.toml`)"), "toml")[0]
    text += "\n" + code_blocks(section("Halt flags"), "toml")[0]
    for path in MOVED:
        text = text.replace(path, f"{tmp_path}{path}")
    text = text.replace(EXAMPLE_FINGERPRINT, gpg_key.fingerprint)
    data = tomllib.loads(text)
    tables = data["rebuilder"] + data["halt"]["signer"]
    for table in tables:
        for key_file in map(Path, table.get("keys", [])):
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key = make_key(tmp_path / "generated", "ed25519", key_file.stem)
            write_public_key(key, key_file, "json" if key_file.suffix == ".json" else "pem")
        if "gpg_keyring" in table:
            Path(table["gpg_keyring"]).write_bytes(gpg_key.public_asc.read_bytes())
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    return policy


def test_policy_reference_loads_and_its_patterns_match_the_documented_ids(readme_policy: Path) -> None:
    policy: Policy = load_policy(readme_policy)
    assert policy.warnings == ()
    assert policy.repositories and policy.halt is not None
    ids = [repo_id for _, repo_id in documented_ids()]
    for rule in policy.repositories:
        for pattern in rule.match:
            hits = [i for i in ids if repoid.matches(i, pattern)]
            assert hits, f"[[repository]] {rule.name}: {pattern!r} matches no id the README documents"
            assert all(policy.rule_for(i)[0] is rule for i in hits)


def test_documented_ids_are_what_the_code_computes() -> None:
    checked = 0
    for given, repo_id in documented_ids():
        spans = re.findall(r"`([^`]+)`", given)
        if given.startswith("deb822:"):
            [uris] = spans
            stanza = f"Types: deb\n{uris}\nSuites: bookworm\n"
            assert [s.repo_id for s in subjects(stanza)] == [repo_id]
        elif given.startswith("dnf: `["):
            assert spans[0].strip("[]") == repoid.dnf_repo_id(repo_id) == repo_id
        elif given.startswith("dnf: `dnf install ./"):
            assert repo_id == repoid.DNF_COMMANDLINE
        elif spans and spans[0].startswith("deb "):
            assert [s.repo_id for s in subjects(spans[0])] == [repo_id], given
        else:
            assert "--repo R" in given and repo_id == "R"
            continue
        checked += 1
    assert checked >= 8


def test_explain_example_output(readme_policy: Path, tmp_path: Path) -> None:
    [example] = [b for b in code_blocks(section("Repository ids")) if b.startswith("$ rebuildgate check-config")]
    command, *expected = example.splitlines()
    explain_arg = re.search(r"--explain '([^']+)'", command)
    assert explain_arg
    r = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "check-config", "--policy", str(readme_policy),
                        "--explain", explain_arg.group(1)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    shown = r.stdout.replace(str(tmp_path), "")
    assert shown.splitlines() == expected
