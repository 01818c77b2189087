"""sources.list entries as an admin writes them, read for check-config --explain."""

from __future__ import annotations

import pytest

from rebuildgate.aptsources import SourcesError, looks_like_sources, parse


@pytest.mark.parametrize("text,uri,suites,components", [
    ("deb rebuildgate+https://deb.debian.org/debian bookworm main contrib",
     "rebuildgate+https://deb.debian.org/debian", ("bookworm",), ("main", "contrib")),
    ("deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] rebuildgate+http://127.0.0.1:18080/ ./",
     "rebuildgate+http://127.0.0.1:18080/", ("./",), ()),
    ("deb [ trusted=yes ] rebuildgate+file:/srv/mirror bookworm main  # a comment",
     "rebuildgate+file:/srv/mirror", ("bookworm",), ("main",)),
])
def test_one_line_entries(text, uri, suites, components) -> None:
    [source] = parse(text)
    assert (source.type, source.uri, source.suites, source.components) == ("deb", uri, suites, components)
    assert source.through_rebuildgate


def test_deb822_stanza_gives_one_source_per_type_and_uri() -> None:
    text = ("Types: deb deb-src\nURIs: rebuildgate+https://deb.debian.org/debian\n  https://mirror.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian.gpg\n\n"
            "Types: deb\nURIs: rebuildgate+http://127.0.0.1:18080/\nSuites: ./\nEnabled: no\n")
    sources = parse(text)
    assert [(s.type, s.repo_id, s.through_rebuildgate) for s in sources] == [
        ("deb", "deb.debian.org/debian", True), ("deb-src", "deb.debian.org/debian", True),
        ("deb", "mirror.example/debian", False), ("deb-src", "mirror.example/debian", False),
        ("deb", "127.0.0.1:18080", True)]
    assert sources[0].suites == ("bookworm", "bookworm-updates") and not sources[-1].enabled


@pytest.mark.parametrize("text", ["deb.debian.org/debian", "updates", "@commandline", "https://x/debian"])
def test_a_repository_id_is_not_a_sources_entry(text) -> None:
    assert not looks_like_sources(text)


@pytest.mark.parametrize("text,problem", [
    ("deb rebuildgate+https://deb.debian.org/debian", "needs a URI and a suite"),
    ("deb [trusted=yes rebuildgate+https://x/ ./", "not closed"),
    ("deb deb.debian.org/debian bookworm", "is not a URI"),
    ("Types: deb\nURIs: https://x/debian\n", "needs Types:, URIs: and Suites:"),
    ("Types: rpm\nURIs: https://x/\nSuites: a\n", "not deb or deb-src"),
])
def test_unreadable_entries_say_why(text, problem) -> None:
    with pytest.raises(SourcesError, match=problem):
        parse(text)
