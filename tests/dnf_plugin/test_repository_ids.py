"""Repository ids through real dnf 4: the repo id, and ``@commandline`` for local files,
are what ``[[repository]]`` patterns match (as the README says)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dnf_plugin.world import World
from tests.support.policy import write_policy

pytestmark = pytest.mark.timeout(120)


def test_rules_match_dnf_repo_ids_and_commandline(world: World, tmp_path: Path) -> None:
    """Global threshold 1; the `gated` repo id needs 2; local files are not gated."""
    policy = write_policy(tmp_path / "policy" / "policy.toml", [r.entry() for r in world.rebuilders], threshold=1,
                          arrays={"repository": [{"name": "strict", "match": ["gated"], "threshold": 2},
                                                 {"name": "local", "match": ["@commandline"], "gate": False}]})
    sandbox = world.sandbox(tmp_path / "dnf", policy=policy)
    lonely = sandbox.run("install", "lonely")  # rb1 only: enough for the global rule, not for `gated`
    assert lonely.returncode == 1, lonely
    assert "1 vote (2 required)" in lonely.stderr
    bad = world.files["localbad"]  # nobody attests it
    local = sandbox.run("install", f"./{bad.name}", cwd=bad.parent)
    assert local.returncode == 0, local
    assert sandbox.installed() == {"localbad-1.0-1.noarch"}
    log = [json.loads(line) for line in (policy.parent / "decisions.log").read_text().splitlines()]
    # the local file is judged too (halts apply to ungated repositories), as not gated: no rebuilder asked
    assert [(e["artifact"], e["repo"]) for e in log] == [("lonely-1.0-1.noarch.rpm", "gated"),
                                                         ("localbad-1.0-1.noarch.rpm", "@commandline")]
    assert log[1]["reason"] == "repository is not gated by the policy" and log[1]["allowed"]
