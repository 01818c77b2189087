"""Policy loading: every mistake names the file and the key; nothing is ignored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rebuildgate.errors import ConfigError
from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy, policy_path

from tests.support.policy import RebuilderEntry, write_policy


@pytest.fixture
def key(tmp_keys):
    return tmp_keys("ed25519").public_pem


def rb(name: str, key: Path, **extra) -> RebuilderEntry:
    return RebuilderEntry(name, f"http://127.0.0.1:9/{name}", [key], extra=extra)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_policy(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)
    return e.value


def test_minimal_policy_and_defaults(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)]))
    assert p.threshold == 1 and p.max_conflicts == 0 and p.mode == "enforce"
    assert p.rebuilders[0].layout == "package-rebuilder" and p.rebuilders[0].keys == (key,)


def test_relative_key_paths_are_relative_to_the_policy(tmp_path, key) -> None:
    (tmp_path / "k.pem").write_bytes(key.read_bytes())
    p = load_policy(write(tmp_path, 'threshold = 1\n[[rebuilder]]\nname = "a"\nurl = "file:///x"\nkeys = ["k.pem"]\n'))
    assert p.rebuilders[0].keys == (tmp_path / "k.pem",)


def test_policy_path_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("REBUILDGATE_POLICY", raising=False)
    assert policy_path() == Path("/etc/rebuildgate/policy.toml")
    monkeypatch.setenv("REBUILDGATE_POLICY", str(tmp_path / "env.toml"))
    assert policy_path() == tmp_path / "env.toml"
    assert policy_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"


def test_missing_file(tmp_path) -> None:
    e = error_of(tmp_path / "nope.toml")
    assert "does not exist" in str(e)


def test_invalid_toml_says_where(tmp_path) -> None:
    e = error_of(write(tmp_path, "threshold = = 2\n"))
    assert "not valid TOML" in str(e) and "line 1" in str(e)


BAD_TOP = [
    ("threshold = 0", "threshold", "at least 1"),
    ("threshold = -1", "threshold", "at least 1"),
    ('threshold = "2"', "threshold", "must be an integer"),
    ("threshold = true", "threshold", "not a boolean"),
    ("threshold = 3", "threshold", "only 2 independent"),
    ("threshold = 1\nmax_conflicts = -1", "max_conflicts", "at least 0"),
    ('threshold = 1\nmode = "permissive"', "mode", "must be one of"),
    ("threshold = 1\nthreshhold = 2", "threshhold", "unknown key"),
    ("threshold = 1\ngate_unlisted = 1", "gate_unlisted", "true or false"),
]


@pytest.mark.parametrize("head,key_name,problem", BAD_TOP)
def test_bad_top_level_keys(tmp_path, key, head, key_name, problem) -> None:
    body = "".join(f'\n[[rebuilder]]\nname = "{n}"\nurl = "http://h/{n}"\nkeys = ["{key}"]\n' for n in "ab")
    e = error_of(write(tmp_path, head + "\n" + body))
    assert e.key == key_name and problem in str(e)


def test_threshold_above_operators_counts_operators(tmp_path, key) -> None:
    path = write_policy(tmp_path / "p.toml", [rb("a", key, operator="org"), rb("b", key, operator="org")],
                        threshold=2)
    e = error_of(path)
    assert e.key == "threshold" and "only 1 independent" in str(e)


BAD_REBUILDER = [
    ({"url": "ftp://x"}, "url", "must start with"),
    ({"layout": "magic"}, "layout", "must be one of"),
    ({"layout": "template"}, "url_template", "is required"),
    ({"layout": "template", "url_template": "{url}/{nope}"}, "url_template", "placeholder"),
    ({"url_template": "{url}/x"}, "url_template", "only used"),
    ({"keys": ["/does/not/exist.pem"]}, "keys", "does not exist"),
    ({"keys": [1]}, "keys", "must be a non-empty string"),
    ({"keys": []}, "keys", "at least one key"),
    ({"gpg_keys": ["ABCD"]}, "gpg_keys", "40-hex-digit"),
    ({"gpg_keys": ["A" * 40]}, "gpg_keyring", "is required"),
    ({"operator": 3}, "operator", "must be a string"),
    ({"colour": "red"}, "colour", "unknown key"),
]


@pytest.mark.parametrize("extra,key_name,problem", BAD_REBUILDER)
def test_bad_rebuilder_keys(tmp_path, key, extra, key_name, problem) -> None:
    table = {"name": "a", "url": "http://h/a", "keys": [str(key)], **extra}
    e = error_of(write_policy(tmp_path / "p.toml", [table]))
    assert e.key == f"rebuilder[0] (a).{key_name}" and problem in str(e)


def test_rebuilder_name_required_and_unique(tmp_path, key) -> None:
    e = error_of(write_policy(tmp_path / "p.toml", [{"url": "http://h", "keys": [str(key)]}]))
    assert e.key == "rebuilder[0].name"
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key), rb("a", key)]))
    assert e.key == "rebuilder[1].name" and "used by two" in str(e)


def test_no_rebuilders(tmp_path) -> None:
    assert error_of(write(tmp_path, "threshold = 1\n")).key == "rebuilder"
    assert error_of(write(tmp_path, "threshold = 1\nrebuilder = []\n")).key == "rebuilder"
    assert error_of(write(tmp_path, 'threshold = 1\nrebuilder = "x"\n')).key == "rebuilder"


def test_unreadable_key_file(tmp_path, key) -> None:
    key.chmod(0)
    try:
        import os
        if os.geteuid() == 0:  # root reads anything: use a directory instead
            path = write_policy(tmp_path / "p.toml", [rb("a", tmp_path)])
            assert "not a file" in str(error_of(path))
            return
        assert "not readable" in str(error_of(write_policy(tmp_path / "p.toml", [rb("a", key)])))
    finally:
        key.chmod(0o644)


@pytest.mark.parametrize("table,key_name,problem", [
    ({"name": "r"}, "match", "is required"),
    ({"match": ["x"], "threshold": 0}, "threshold", "at least 1"),
    ({"match": ["x"], "threshold": 5}, "threshold", "only 2 independent"),
    ({"match": ["x"], "rebuilders": ["zz"]}, "rebuilders", "no [[rebuilder]] defines"),
    ({"match": ["x"], "rebuilders": ["a"], "threshold": 2}, "threshold", "only 1 independent"),
    ({"match": ["x"], "gate": "yes"}, "gate", "true or false"),
    ({"match": ["x"], "mode": "loud"}, "mode", "must be one of"),
    ({"match": ["x"], "extra": 1}, "extra", "unknown key"),
])
def test_bad_repository_rules(tmp_path, key, table, key_name, problem) -> None:
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key), rb("b", key)], arrays={"repository": [table]}))
    assert e.key == f"repository[0].{key_name}" and problem in str(e)


@pytest.mark.parametrize("table,key_name,problem", [
    ({"package": "x", "reason": "r"}, "expires", "is required"),
    ({"package": "x", "reason": "r", "expires": "2030-01-01"}, "expires", "must be a date"),
    ({"expires": dt.date(2030, 1, 1), "reason": "r"}, "package", "is required"),
    ({"package": "x", "expires": dt.date(2030, 1, 1)}, "reason", "is required"),
])
def test_bad_allow_entries(tmp_path, key, table, key_name, problem) -> None:
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key)], arrays={"allow": [table]}))
    assert e.key == f"allow[0].{key_name}" and problem in str(e)


@pytest.mark.parametrize("fetch,key_name,problem", [
    ({"deadline": 0}, "deadline", "greater than 0"),
    ({"connect_timeout": "5"}, "connect_timeout", "must be an integer or a number"),
    ({"max_bytes": 10}, "max_bytes", "at least 1024"),
    ({"proxy": "ftp://p"}, "proxy", "must be an http"),
    ({"speed": 1}, "speed", "unknown key"),
    ({"warm_up": "yes"}, "warm_up", "must be true or false"),
    ({"warm_up_packages": 0}, "warm_up_packages", "must be at least 1"),
    ({"warm_up_seconds": 0}, "warm_up_seconds", "greater than 0"),
])
def test_bad_fetch_settings(tmp_path, key, fetch, key_name, problem) -> None:
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key)], fetch=fetch))
    assert e.key == f"fetch.{key_name}" and problem in str(e)


@pytest.mark.parametrize("fetch", [{"cache_dir": ""}, {"cache_ttl": 0}])
def test_a_warm_up_with_nowhere_to_put_evidence_is_a_warning(tmp_path, key, fetch) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], fetch={"warm_up": True, **fetch}))
    assert p.fetch.warm_up and p.warnings == (
        "fetch.warm_up is on but there is no cache (cache_dir or cache_ttl): the warm-up after apt-get "
        "update fetches nothing",)
    on = load_policy(write_policy(tmp_path / "q.toml", [rb("a", key)], fetch={"warm_up": True,
                                                                               "cache_dir": str(tmp_path / "c")}))
    assert on.warnings == () and on.fetch.warm_up_packages == 2000 and on.fetch.warm_up_seconds == 300.0


def test_repository_rules_resolve_first_match(tmp_path, key) -> None:
    p = load_policy(write_policy(
        tmp_path / "p.toml", [rb("a", key), rb("b", key), rb("c", key)], threshold=2,
        arrays={"repository": [
            {"name": "local", "match": ["local-*"], "gate": False},
            {"name": "debian", "match": ["deb.example/debian"], "threshold": 1, "rebuilders": ["c"], "mode": "audit"},
        ]}))
    art = lambda repo: Artifact("x.deb", "0" * 64, repo=repo)  # noqa: E731
    local = p.resolve(art("local-cache"))
    assert not local.rule.gated and local.rebuilders == () and local.repository == "local"
    deb = p.resolve(art("deb.example/debian"))
    assert deb.rule.threshold == 1 and deb.rule.mode == "audit" and [r.name for r in deb.rebuilders] == ["c"]
    other = p.resolve(art("elsewhere"))
    assert other.rule.gated and other.rule.threshold == 2 and len(other.rebuilders) == 3


def test_gate_unlisted_false(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], gate_unlisted=False,
                                 arrays={"repository": [{"match": ["gated"]}]}))
    assert not p.resolve(Artifact("x", "0" * 64, repo="other")).rule.gated
    assert p.resolve(Artifact("x", "0" * 64, repo="gated")).rule.gated


def test_allowlist_matches_until_expiry(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], arrays={"allow": [
        {"package": "linux-image-*", "version": "6.1.*", "expires": dt.date(2026, 12, 31), "reason": "kernel"}]}))
    kernel = Artifact("k.deb", "0" * 64, name="linux-image-amd64", version="6.1.5-1")
    assert "kernel" in (p.resolve(kernel, dt.date(2026, 12, 31)).rule.allowlisted or "")
    assert p.resolve(kernel, dt.date(2027, 1, 1)).rule.allowlisted is None
    other = Artifact("k.deb", "0" * 64, name="linux-image-amd64", version="6.2-1")
    assert p.resolve(other, dt.date(2026, 1, 1)).rule.allowlisted is None


def test_describe_speaks_plainly(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key, operator="org"), rb("b", key)], threshold=2,
                                 arrays={"repository": [{"name": "loc", "match": ["l*"], "gate": False}]}))
    text = "\n".join(p.describe())
    assert "needs 2 of 2 independent rebuilder operators" in text
    assert "rebuilder a, operator org" in text and "repository loc (l*): not gated" in text


def test_allowlist_entry_may_pin_exact_files(tmp_path, key) -> None:
    good, other = "ab" * 32, "cd" * 32
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], arrays={"allow": [
        {"package": "linux-image-*", "sha256": [good.upper()], "expires": dt.date(2099, 1, 1), "reason": "k"}]}))
    assert p.allow[0].sha256 == (good,)
    pinned = Artifact("k.deb", good, name="linux-image-amd64", version="6.1.5-1")
    assert p.resolve(pinned).rule.allowlisted
    assert p.resolve(Artifact("k.deb", other, name="linux-image-amd64", version="6.1.5-1")).rule.allowlisted is None
    assert "only sha256 abababababababab..." in "\n".join(p.describe())
    with pytest.raises(ConfigError, match=r"allow\[0\].sha256: 'xyz' is not a sha256"):
        load_policy(write_policy(tmp_path / "bad.toml", [rb("a", key)], arrays={"allow": [
            {"package": "x", "sha256": "xyz", "expires": dt.date(2099, 1, 1), "reason": "k"}]}))


def test_allowlist_judges_the_file_not_the_index(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], arrays={"allow": [
        {"package": "linux-image-*", "expires": dt.date(2099, 1, 1), "reason": "kernel"}]}))
    index = Artifact("linux-image-6.1.0-99-amd64_1.0-1_all.deb", "ab" * 32, name="linux-image-6.1.0-99-amd64",
                     version="1.0-1", arch="all")
    file = Artifact("openssh-server_1.0-1_all.deb", "ab" * 32, name="openssh-server", source="openssh",
                    version="1.0-1", arch="all")
    judged = index.with_file_identity(file)
    assert p.resolve(index).rule.allowlisted and p.resolve(judged).rule.allowlisted is None
    assert judged.filename == file.filename and judged.sha256 == index.sha256
    assert judged.index_said == "linux-image-6.1.0-99-amd64 1.0-1 (all), source linux-image-6.1.0-99-amd64"
    assert index.with_file_identity(index) is index  # the same identity: nothing changes


@pytest.mark.parametrize("match,fragment", [
    (["deb.debian.org/debian/*"], "did you mean 'deb.debian.org/debian'"),  # the README's old example
    (["127.0.0.1:18080/*"], "did you mean '127.0.0.1:18080'"),
    (["https://deb.debian.org/debian"], "is a URI"),
    (["rebuildgate+http://127.0.0.1:18080/"], "did you mean '127.0.0.1:18080'"),
    (["deb.debian.org/debian/"], "ends with '/'"),
    (["updates", "fedora updates"], "whitespace"),
])
def test_repository_pattern_no_id_can_match_is_an_error(tmp_path, key, match, fragment) -> None:
    """A rule that never matches would hand its repositories to the (weaker) global rule."""
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key), rb("b", key)],
                              arrays={"repository": [{"name": "debian", "match": match, "threshold": 2}]}))
    assert e.key == "repository[0].match" and fragment in str(e)


def test_repository_rule_shadowed_by_an_earlier_rule_is_an_error(tmp_path, key) -> None:
    e = error_of(write_policy(tmp_path / "p.toml", [rb("a", key), rb("b", key)], arrays={"repository": [
        {"name": "most", "match": ["deb.*"], "threshold": 1},
        {"name": "debian", "match": ["deb.debian.org/debian"], "threshold": 2}]}))
    assert e.key == "repository[1].match"
    assert "already matched by repository[0] (most)'s pattern 'deb.*'" in str(e) and "move this rule above" in str(e)


def test_repository_rules_for_a_root_and_below_it(tmp_path, key) -> None:
    """`X/*` is fine when X itself is matched: by the same rule or an earlier one."""
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key), rb("b", key)], arrays={"repository": [
        {"name": "root", "match": ["deb.debian.org/debian"], "threshold": 2},
        {"name": "below", "match": ["deb.debian.org/debian/*"], "threshold": 1},
        {"name": "both", "match": ["127.0.0.1:18080", "127.0.0.1:18080/*"], "gate": False}]}))
    assert p.rule_for("deb.debian.org/debian") == (p.repositories[0], "deb.debian.org/debian")
    assert p.rule_for("deb.debian.org/debian/extra")[0].name == "below"
    assert p.rule_for("127.0.0.1:18080")[0].name == "both" and p.rule_for(None) == (None, None)
    assert p.warnings == ()


def test_repository_pattern_inside_an_archive_is_a_warning(tmp_path, key) -> None:
    p = load_policy(write_policy(tmp_path / "p.toml", [rb("a", key)], arrays={"repository": [
        {"name": "deep", "match": ["deb.debian.org/debian/dists/bookworm"]}]}))
    [warning] = p.warnings
    assert warning.startswith("repository[0].match (deep): pattern 'deb.debian.org/debian/dists/bookworm'")
