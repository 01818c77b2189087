"""The README's recipe for rebuilder operators, run as written.

The shell block between the ``operator-recipe`` markers is executed with
bash (``in-toto-run`` from this venv, a fresh OpenSSL key, a freshly built
.deb); the published tree must then give the package a vote through
``rebuildgate verify``, and a tampered build must be blocked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.packages import build_deb
from tests.support.policy import RebuilderEntry, write_policy

ROOT = Path(__file__).resolve().parents[2]


def recipe() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- operator-recipe[^>]*-->\s*```sh\n(.*?)```\s*<!-- /operator-recipe -->", text, re.S)
    assert match, "the README's operator recipe is missing"
    return match.group(1)


def test_the_readme_recipe_publishes_a_link_that_votes(tmp_path) -> None:
    out, web, key = tmp_path / "out", tmp_path / "web", tmp_path / "rebuilder.key"
    deb = build_deb(out, "hello", "2:1.0-1", source="hello")
    build_deb(out, "hello-doc", "2:1.0-1", source="hello")
    env = {**os.environ, "KEY": str(key), "OUT": str(out), "WEB": str(web), "SOURCE": "hello", "VERSION": "1.0-1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe()], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    link = json.loads((web / "sources" / "hello" / "1.0-1" / "metadata").read_text())
    assert sorted(link["signed"]["products"]) == ["hello-doc_1.0-1_all.deb", "hello_1.0-1_all.deb"]

    policy = write_policy(tmp_path / "policy.toml", [RebuilderEntry("op", f"file://{web}", [Path(f"{key}.pub")])])
    verdict = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "verify", "--policy", str(policy), "--json",
                              str(deb)], capture_output=True, text=True, timeout=60)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert json.loads(verdict.stdout)["votes"] == ["op"]

    tampered = build_deb(tmp_path / "evil", "hello", "2:1.0-1", source="hello", payload=b"backdoor\n")
    verdict = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "verify", "--policy", str(policy), "--json",
                              str(tampered)], capture_output=True, text=True, timeout=60)
    assert verdict.returncode == 1 and json.loads(verdict.stdout)["conflict_count"] == 1
