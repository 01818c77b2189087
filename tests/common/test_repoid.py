"""Repository ids: one form, computed in one place, and patterns checked against it."""

from __future__ import annotations

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from rebuildgate import repoid


@pytest.mark.parametrize("uri,expected", [
    ("rebuildgate+https://deb.debian.org/debian/", "deb.debian.org/debian"),
    ("rebuildgate+https://deb.debian.org/debian", "deb.debian.org/debian"),
    ("https://deb.debian.org/debian/", "deb.debian.org/debian"),
    ("rebuildgate+http://127.0.0.1:18080/", "127.0.0.1:18080"),
    ("rebuildgate+http://user:secret@mirror.example:8080/debian/", "mirror.example:8080/debian"),
    ("rebuildgate+file:/srv/mirror/debian/", "/srv/mirror/debian"),
    ("rebuildgate+file:///srv/mirror/debian", "/srv/mirror/debian"),
    ("rebuildgate+file:///", "/"),
])
def test_apt_id_is_the_sources_uri_without_scheme_credentials_and_slash(uri, expected) -> None:
    assert repoid.apt_repo_id(uri) == expected


@pytest.mark.parametrize("text,expected", [
    ("deb.debian.org/debian", "deb.debian.org/debian"),
    ("deb.debian.org/debian/", "deb.debian.org/debian"),
    ("rebuildgate+https://deb.debian.org/debian/", "deb.debian.org/debian"),
    (" updates ", "updates"),
    ("fedora:39", "fedora:39"),  # dnf allows ':' in a repo id; it is not a scheme
    ("localhost:8080/debian", "localhost:8080/debian"),
    ("@commandline", "@commandline"),
])
def test_normalize_turns_what_a_person_types_into_the_id(text, expected) -> None:
    assert repoid.normalize(text) == expected


@pytest.mark.parametrize("pattern,fragment,suggestion", [
    ("deb.debian.org/debian/*", "misses the repository 'deb.debian.org/debian' itself",
     "'deb.debian.org/debian'"),
    ("127.0.0.1:18080/*", "itself", "'127.0.0.1:18080'"),
    ("deb.debian.org/*", "itself", "'deb.debian.org'"),
    ("/srv/mirror/*", "itself", "'/srv/mirror'"),
    ("https://deb.debian.org/debian", "is a URI", "'deb.debian.org/debian'"),
    ("rebuildgate+https://deb.debian.org/debian/*", "is a URI", "'deb.debian.org/debian'"),
    ("deb.debian.org/debian/", "ends with '/'", "'deb.debian.org/debian'"),
    ("deb.debian.org/debian ", "whitespace", "'deb.debian.org/debian'"),
    ("my repo", "whitespace", "'myrepo'"),
    ("deb.debian.org/debian/dists/*", "itself", "'deb.debian.org/debian'"),
])
def test_patterns_no_id_can_match_are_errors_with_a_suggestion(pattern, fragment, suggestion) -> None:
    [finding] = repoid.check_patterns([pattern])
    assert finding.error and fragment in finding.message()
    assert f"did you mean {suggestion}" in finding.message()
    assert repoid.FORM in finding.message()  # says what an id looks like
    assert "\n" not in finding.message()


@pytest.mark.parametrize("patterns", [
    ["deb.debian.org/debian"], ["*"], ["updates", "fedora*"], ["@commandline"], ["/srv/mirror/debian"],
    ["deb.debian.org/debian", "deb.debian.org/debian/*"],  # the root named too: below it is deliberate
    ["deb.debian.org", "deb.debian.org/*"], ["deb.debian.org/debian*"], ["*/debian"], ["127.0.0.1:*"],
])
def test_patterns_of_the_id_form_pass(patterns) -> None:
    assert repoid.check_patterns(patterns) == []


def test_below_root_pattern_passes_when_an_earlier_pattern_names_the_root() -> None:
    assert repoid.check_patterns(["deb.debian.org/debian/*"], earlier=["deb.debian.org/debian"]) == []


def test_a_path_inside_an_archive_is_a_warning() -> None:
    [finding] = repoid.check_patterns(["deb.debian.org/debian/dists/bookworm"])
    assert not finding.error and "inside an archive" in finding.message()
    assert "did you mean 'deb.debian.org/debian'?" in finding.message()


@pytest.mark.parametrize("pattern,repo_id", [
    ("127.0.0.1:18080/*", "127.0.0.1:18080"),
    ("https://deb.debian.org/debian/", "deb.debian.org/debian"),
    ("deb.debian.org/debian/*", "deb.debian.org/debian/extra"),
])
def test_halts_match_what_their_pattern_was_meant_to_name(pattern, repo_id) -> None:
    assert repoid.matches_intended(repo_id, [pattern])
    assert not repoid.matches_intended("elsewhere.example/debian", [pattern])
    assert not repoid.matches_intended(None, [pattern])


@pytest.mark.parametrize("earlier,later,covered", [
    ("*", "deb.debian.org/debian", True), ("deb.*", "deb.debian.org/*", True),
    ("deb.debian.org/debian", "deb.debian.org/debian", True), ("deb.debian.org/*", "deb.debian.org/debian", True),
    ("deb.debian.org/debian", "deb.debian.org/debian-security", False),
    ("deb.debian.org/debian", "deb.debian.org/debian/*", False), ("*.org/debian", "deb.*", False),
])
def test_covers(earlier, later, covered) -> None:
    assert repoid.covers(earlier, later) is covered


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(list("ab:/.*?[]!@+ \t#%") + ["http://", "rebuildgate+", "/*", "//"]),
                max_size=12).map("".join))
def test_any_text_gives_an_id_and_a_verdict_never_an_exception(text) -> None:
    """Patterns come from a policy or a signed halt, sources lines from a person: never a traceback."""
    assert repoid.apt_repo_id(text) and repoid.normalize(text) is not None
    assert repoid.intended(text)
    for finding in repoid.check_patterns([text]):
        assert "\n" not in finding.message()
    repoid.matches_intended("deb.debian.org/debian", [text])
