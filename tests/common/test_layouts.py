"""URL layouts: where each rebuilder publishes an artifact's evidence, without any I/O.

The end-to-end counterparts (the URL a server really sees, a path that would
lead out of a file:// directory) are in tests/hostile/test_inputs.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate.errors import FetchError
from rebuildgate.layouts import (
    _component,
    evidence_urls,
    location,
    rebuilderd_attestation_url,
    rebuilderd_lookup_url,
    template_fields,
)
from rebuildgate.model import Artifact
from rebuildgate.policy import Rebuilder

from tests.support.keys import make_key
from tests.support.links import digests, make_link, sign_legacy
from tests.support.policy import RebuilderEntry, write_policy

HTTP = "http://rb.example/base"
FILE = "file:///srv/evidence"
SHA = "ab" * 32
ARCH_PKG = "filesystem-2025.10.12-1-any.pkg.tar.zst"  # a name that tells nothing else


def rebuilder(layout: str, url: str = HTTP, template: str | None = None) -> Rebuilder:
    return Rebuilder("rb", url, layout, template, keys=(Path("/k"),))


def template(tpl: str, art: Artifact, url: str = HTTP) -> str:
    (out,) = evidence_urls(rebuilder("template", url, tpl), art)
    return out


# --- segments ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["..", ".", "a/b", "a\\b", "x\x00y", "", None, "a\nb"])
def test_unsafe_path_components_are_refused(value) -> None:
    with pytest.raises(FetchError):
        _component(value, "source")


def test_location_decodes_a_file_url_once_and_leaves_http_alone() -> None:
    assert location("file:///srv/my%20evidence/%2541") == "file:///srv/my evidence/%41"
    assert location("http://rb.example/a%20b") == "http://rb.example/a%20b"


# --- template: only the placeholders it uses -----------------------------------

@pytest.mark.parametrize("url,expected", [
    (FILE, f"{FILE}/{ARCH_PKG}.in-toto.link"),
    (HTTP, f"{HTTP}/{ARCH_PKG}.in-toto.link"),
])
def test_filename_template_needs_no_name_version_or_arch(url, expected) -> None:
    """The issue's example: only the file name and its hash are known."""
    assert template("{url}/{filename}.in-toto.link", Artifact(ARCH_PKG, SHA), url) == expected


# Each placeholder alone, with only the field it reads known (besides the file name and hash).
ALONE = [
    ("source", {"source": "foo-src"}, "foo-src"),
    ("source", {"name": "foo"}, "foo"),  # no source: the binary name stands for it
    ("name", {"name": "foo"}, "foo"),
    ("version", {"version": "3:1.0-1"}, "3%3A1.0-1"),
    ("upstream_version", {"version": "3:1.0-1"}, "1.0-1"),
    ("arch", {"arch": "noarch"}, "noarch"),
    ("filename", {}, "foo-1.0-1.noarch.rpm"),
    ("sha256", {}, SHA),  # lower-cased
]


@pytest.mark.parametrize("field,known,expected", ALONE, ids=[f"{f}-{'-'.join(k)}" for f, k, _ in ALONE])
def test_each_placeholder_alone(field, known, expected) -> None:
    art = Artifact("foo-1.0-1.noarch.rpm", SHA.upper(), **known)
    assert template(f"{{url}}/x/{{{field}}}.link", art) == f"{HTTP}/x/{expected}.link"


def test_all_placeholders_together() -> None:
    art = Artifact("foo-1.0-1.noarch.rpm", SHA.upper(), name="foo", source="foo-src", version="3:1.0-1", arch="noarch")
    tpl = "{url}/{source}/{upstream_version}/{filename}.{sha256}.{arch}.{version}.{name}.link"
    assert template(tpl, art) == f"{HTTP}/foo-src/1.0-1/foo-1.0-1.noarch.rpm.{SHA}.noarch.3%3A1.0-1.foo.link"


@pytest.mark.parametrize("field,what", [
    ("source", "source name"), ("name", "package name"), ("version", "version"),
    ("upstream_version", "version"), ("arch", "architecture"),
])
def test_a_used_placeholder_without_a_value_fails_closed(field, what) -> None:
    with pytest.raises(FetchError, match=f"no {what} known"):
        template(f"{{url}}/{{filename}}/{{{field}}}", Artifact(ARCH_PKG, SHA))


def test_source_template_without_source_or_name_fails_closed() -> None:
    with pytest.raises(FetchError, match="no source name known"):
        template("{url}/{source}/{filename}", Artifact(ARCH_PKG, SHA, version="1.0-1", arch="any"))


def test_escaped_braces_are_not_placeholders() -> None:
    assert template_fields("{url}/{{arch}}/{filename}") == {"url", "filename"}
    assert template("{url}/{{arch}}/{filename}", Artifact(ARCH_PKG, SHA)) == f"{HTTP}/{{arch}}/{ARCH_PKG}"


def test_placeholders_the_policy_refuses_are_never_evaluated() -> None:
    for tpl in ("{url}/{nope}", "{url}/{url.__class__}", "{url}/{0}"):
        with pytest.raises(FetchError, match="unknown placeholder"):
            template(tpl, Artifact(ARCH_PKG, SHA))


# --- hostile values, in every placeholder ----------------------------------------

FIELDS = {  # placeholder -> the Artifact field it reads
    "source": "source", "name": "name", "version": "version", "upstream_version": "version",
    "arch": "arch", "filename": "filename", "sha256": "sha256",
}
HOSTILE = ["..", ".", "a/b", "../../x", "a\\b", "x\x00y", "a\nb", "a\r\nX-Injected: 1", "\x1b[2K", "a\x7f",
           "bad\udcffutf8"]


def hostile_artifact(field: str, value: str) -> Artifact:
    known = {"filename": ARCH_PKG, "sha256": SHA, "name": "foo", "source": "foo", "version": "1.0-1", "arch": "any"}
    known[FIELDS[field]] = "1:" + value if field == "upstream_version" else value  # after the epoch
    return Artifact(**known)


@pytest.mark.parametrize("url", [FILE, HTTP])
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("field", list(FIELDS))
def test_hostile_values_are_refused_in_every_placeholder(field, value, url) -> None:
    with pytest.raises(FetchError, match="unsafe|not valid UTF-8"):
        template(f"{{url}}/{{{field}}}", hostile_artifact(field, value), url)


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "sha256"])
def test_percent_signs_are_literal_on_file_bases_and_quoted_on_http(field) -> None:
    value = "1.0%2f..%2fx"
    art = hostile_artifact(field, value)
    assert template(f"{{url}}/{{{field}}}", art, FILE) == f"{FILE}/1.0%2f..%2fx"
    assert template(f"{{url}}/{{{field}}}", art, HTTP) == f"{HTTP}/1.0%252f..%252fx"


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "sha256"])
def test_http_segments_are_quoted_file_segments_raw(field) -> None:
    art = hostile_artifact(field, "c++ 1.0~b#?;h\u00e9")
    assert template(f"{{url}}/{{{field}}}", art, FILE) == f"{FILE}/c++ 1.0~b#?;h\u00e9"
    assert template(f"{{url}}/{{{field}}}", art, HTTP) == f"{HTTP}/c++%201.0~b%23%3F%3Bh%C3%A9"


# --- package-rebuilder -----------------------------------------------------------

@pytest.mark.parametrize("known,path", [
    ({"name": "libfoo1", "source": "foo", "version": "2:1.0+b1~x"}, "foo/1.0+b1~x"),  # Debian epoch dropped
    ({"name": "libfoo1", "source": "foo", "version": "1:2:3-1"}, "foo/2:3-1"),  # only the first colon is the epoch
    ({"name": "foo", "source": "foo", "version": "1:2.3-4.fc40"}, "foo/2.3-4.fc40"),  # RPM epoch dropped
    ({"name": "foo", "source": "foo", "version": "2.3-4.fc40"}, "foo/2.3-4.fc40"),
    ({"name": "x", "version": "1.0"}, "x/1.0"),  # the binary name when no source is known
])
def test_package_rebuilder_urls_use_source_and_drop_epoch(known, path) -> None:
    art = Artifact("f", SHA, **known)
    assert evidence_urls(rebuilder("package-rebuilder", FILE), art) == [f"{FILE}/sources/{path}/metadata"]
    http = path.replace(":", "%3A")
    assert evidence_urls(rebuilder("package-rebuilder"), art) == [f"{HTTP}/sources/{http}/metadata"]


def test_package_rebuilder_percent_and_missing_values() -> None:
    art = Artifact("x.deb", SHA, name="x", version="1%2")
    assert evidence_urls(rebuilder("package-rebuilder"), art) == [f"{HTTP}/sources/x/1%252/metadata"]
    assert evidence_urls(rebuilder("package-rebuilder", FILE), art) == [f"{FILE}/sources/x/1%2/metadata"]
    with pytest.raises(FetchError, match="no source name known"):
        evidence_urls(rebuilder("package-rebuilder"), Artifact("x.deb", SHA, version="1"))
    with pytest.raises(FetchError, match="no version known"):
        evidence_urls(rebuilder("package-rebuilder"), Artifact("x.deb", SHA, name="x", version="3:"))


# --- rebuilderd ------------------------------------------------------------------

def test_rebuilderd_has_no_fixed_url() -> None:
    with pytest.raises(FetchError, match="no fixed URL"):
        evidence_urls(rebuilder("rebuilderd"), Artifact("foo.deb", SHA, name="foo", version="1", arch="all"))


def test_rebuilderd_lookup_url_keeps_the_epoch_and_encodes_the_query() -> None:
    art = Artifact("c++_1:2.0_amd64.deb", SHA, name="c++", version="1:2.0&x=1", arch="amd64")
    assert rebuilderd_lookup_url(HTTP, art) == \
        f"{HTTP}/api/v1/packages/binary?name=c%2B%2B&version=1%3A2.0%26x%3D1&architecture=amd64"


@pytest.mark.parametrize("field,value", [("name", None), ("version", None), ("arch", None), ("name", "a\r\nb"),
                                         ("version", ".."), ("arch", "a/b")])
def test_rebuilderd_lookup_needs_safe_name_version_and_arch(field, value) -> None:
    known = {"name": "foo", "version": "1", "arch": "all", field: value}
    with pytest.raises(FetchError):
        rebuilderd_lookup_url(HTTP, Artifact("foo.deb", SHA, **known))


def test_rebuilderd_attestation_url() -> None:
    assert rebuilderd_attestation_url(HTTP, 7, 0) == f"{HTTP}/api/v1/builds/7/artifacts/0/attestation"
    for build, art in ((None, 1), (1, -1), (True, 1), ("7", 1), (1, 2.0), (1, "../x")):
        with pytest.raises(FetchError):
            rebuilderd_attestation_url(HTTP, build, art)


# --- end to end: the command line, with only a file name and its hash -------------------

def test_cli_verifies_a_filename_template_without_name_or_version(tmp_path) -> None:
    content = b"an Arch Linux package"
    key = make_key(tmp_path / "keys")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / f"{ARCH_PKG}.in-toto.link").write_bytes(sign_legacy(make_link({ARCH_PKG: content}), key.signer))
    policy = write_policy(tmp_path / "policy.toml", [RebuilderEntry(
        "rb", f"file://{evidence}", [key.public_pem], "template", {"url_template": "{url}/{filename}.in-toto.link"})])

    def verify(sha256: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rebuildgate.cli", "verify", "--policy", str(policy),
                               "--artifact", ARCH_PKG, "--sha256", sha256],
                              capture_output=True, text=True, timeout=60)

    r = verify(digests(content)["sha256"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted" in r.stdout and "1 vote (1 required)" in r.stdout
    r = verify(digests(b"something else")["sha256"])  # the link was read and judged, not skipped
    assert r.returncode == 1 and "blocked" in r.stdout, r.stdout + r.stderr
