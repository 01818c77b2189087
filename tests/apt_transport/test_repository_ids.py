"""Repository ids through real apt-get 2.6.

What apt gives is what the README says (`rebuildgate.repoid`), for flat
repositories and Debian-layout archives, over http and file; and a
``[[repository]]`` rule written another way is refused at load, never
silently replaced by the weaker global rule.
"""

from __future__ import annotations

from typing import Callable

import pytest

from rebuildgate.explain import subjects

from tests.apt_transport.harness import AptEnv
from tests.apt_transport.world import Package, Repo, World
from tests.support.policy import RebuilderEntry, write_policy

pytestmark = pytest.mark.timeout(120)

# layout -> (the repository, its sources.list entry, the id the README says apt gives)
Layout = Callable[[World, Package], tuple[Repo, str, str]]


def _host(repo: Repo) -> str:
    assert repo.server is not None
    return repo.server.url.removeprefix("http://")


LAYOUTS: dict[str, Layout] = {
    "flat-at-the-root": lambda w, p: (r := w.repo([p]), f"deb [trusted=yes] rebuildgate+{r.http} ./", _host(r)),
    "flat-below-a-path": lambda w, p: (r := w.repo([p], path="sub/flat"),
                                       f"deb [trusted=yes] rebuildgate+{r.http} ./", f"{_host(r)}/sub/flat"),
    "debian-archive": lambda w, p: (r := w.archive([p]), f"deb [trusted=yes] rebuildgate+{r.http} bookworm main",
                                    f"{_host(r)}/debian"),
    "archive-with-credentials": lambda w, p: (
        r := w.archive([p]), f"deb [trusted=yes] rebuildgate+http://user:secret@{_host(r)}/debian/ bookworm main",
        f"{_host(r)}/debian"),
    "flat-over-file": lambda w, p: (r := w.repo([p], serve=False), f"deb [trusted=yes] rebuildgate+{r.file} ./",
                                    str(r.directory)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_apt_gives_the_documented_repository_id(world: World, apt: AptEnv, layout: str) -> None:
    hello = world.package("hello")
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    repo, line, expected = LAYOUTS[layout](world, hello)
    assert [s.repo_id for s in subjects(line)] == [expected]  # what check-config --explain says
    opts = {"Rebuildgate::Policy": str(world.policy([rb], threshold=1))}
    apt.sources([line])
    assert apt.update(options=opts).returncode == 0
    result = apt.download("hello", options=opts)
    assert result.returncode == 0, result
    [decision] = world.decisions()
    assert decision["repo"] == expected


def test_readme_style_repository_rule_is_refused_not_silently_weaker(world: World, apt_factory) -> None:
    """A threshold-3 rule written `host/*` (the README's old example) never matched apt's
    id `host`: 2 votes passed the global threshold 2.  Now that policy is refused with
    one line naming the file, the key and the id; written as the id, the rule applies."""
    hello = world.package("hello")
    repo = world.repo([hello])
    rbs = [world.rebuilder(f"rb{i}") for i in range(3)]
    for rb in rbs[:2]:
        world.attest(rb, hello)
    host = _host(repo)

    def download(match: list[str]):
        policy = write_policy(world.base / f"policy-{len(match[0])}.toml",
                              [RebuilderEntry(rb.name, rb.url, [rb.key.public_pem]) for rb in rbs], threshold=2,
                              log=world.log, arrays={"repository": [{"name": "strict", "match": match,
                                                                     "threshold": 3}]})
        policy.chmod(0o600)
        apt: AptEnv = apt_factory(f"apt-{len(match[0])}")
        apt.sources([f"deb [trusted=yes] rebuildgate+{repo.http} ./"])
        opts = {"Rebuildgate::Policy": str(policy)}
        assert apt.update(options=opts).returncode == 0
        return apt, apt.download("hello", options=opts)

    apt, refused = download([f"{host}/*"])
    assert refused.returncode == 100, refused
    [line] = [x for x in refused.output.splitlines() if x.startswith("E: Failed to fetch") and "/hello_" in x]
    assert "repository[0].match" in line and f"did you mean '{host}'" in line
    assert apt.downloaded() == []

    apt, blocked = download([host])
    assert blocked.returncode == 100, blocked
    [line] = [x for x in blocked.output.splitlines() if x.startswith("E: Failed to fetch") and "/hello_" in x]
    assert "2 votes (3 required)" in line
    assert apt.downloaded() == []
