"""Fuzzing the policy loader: random TOML-ish text through ``load_policy``
and random TOML-typed dicts through ``parse_policy``.  The only exception
allowed is ConfigError (one line, naming the file), and a policy that loads
must make sense: a threshold some set of operators can reach, finite
positive timeouts, keys for every rebuilder, templates that format.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebuildgate.errors import ConfigError
from rebuildgate.policy import LAYOUTS, MODES, TEMPLATE_FIELDS, URL_SCHEMES, load_policy, parse_policy

from tests.support.keys import make_key

from .helpers import fuzz_settings


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    return make_key(tmp_path_factory.mktemp("policy-fuzz"), "ed25519", "k").public_pem


def check_policy(policy) -> None:
    """What every policy that loads must satisfy."""
    operators = {rb.identity for rb in policy.rebuilders}
    assert 1 <= policy.threshold <= len(operators)
    assert policy.max_conflicts >= 0 and policy.mode in MODES
    names = [rb.name for rb in policy.rebuilders]
    assert len(set(names)) == len(names)
    for rb in policy.rebuilders:
        assert rb.url.startswith(URL_SCHEMES) and rb.layout in LAYOUTS
        assert rb.keys or rb.gpg_keys
        assert all(Path(k).is_file() for k in rb.keys)
        if rb.layout == "template":
            rb.url_template.format(**{f: "x" for f in TEMPLATE_FIELDS})  # as the fetcher will
    for rule in policy.repositories:
        assert rule.match
        if rule.gate:
            subset = [rb for rb in policy.rebuilders if rule.rebuilders is None or rb.name in rule.rebuilders]
            threshold = rule.threshold if rule.threshold is not None else policy.threshold
            assert subset and 1 <= threshold <= len({rb.identity for rb in subset})
        assert rule.max_conflicts is None or rule.max_conflicts >= 0
        assert rule.mode is None or rule.mode in MODES
    for entry in policy.allow:
        assert isinstance(entry.expires, dt.date) and entry.reason.strip() and entry.package
    f = policy.fetch
    assert f.connect_timeout > 0 and f.read_timeout > 0  # (the deadline caps them)
    # The deadline is what ends everything: it must be finite, and Python
    # cannot wait longer than threading.TIMEOUT_MAX (OverflowError).
    assert math.isfinite(f.deadline) and 0 < f.deadline < threading.TIMEOUT_MAX, f"unusable deadline: {f}"
    assert f.max_workers >= 1 and f.max_bytes >= 1024 and f.cache_ttl >= 0


# ---------------------------------------------------------------------------
# TOML-typed values and schema-shaped tables

_text = st.text(max_size=12)
_dates = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))
_scalars = (st.integers(-2**63, 2**63 - 1) | st.floats() | st.booleans() | _text | _dates | st.datetimes()
            | st.times())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_text, inner, max_size=3), max_leaves=8)


def _opt(**fields):
    return st.fixed_dictionaries({}, optional={k: v for k, v in fields.items()})


_small_int = st.integers(-2, 4)
_template = st.lists(st.sampled_from(["{url}", "{filename}", "{sha256}", "{", "}", ".", "[", "]", "!r", "!z", ":",
                                      ">9", "x", "0", "/", "url", "real", "a", "{nope}", "{{", "}}"]),
                     max_size=6).map("".join)


def _base(key: Path) -> dict:
    """A valid policy using every section; the fuzzers start from it."""
    return {
        "threshold": 2, "max_conflicts": 0, "mode": "enforce", "gate_unlisted": True, "log": "/tmp/rbg-fuzz.log",
        "fetch": {"connect_timeout": 1.0, "read_timeout": 1.0, "deadline": 2.0, "max_bytes": 1048576,
                  "max_workers": 4, "proxy": "", "cache_dir": "", "cache_ttl": 0},
        "rebuilder": [
            {"name": "rb1", "url": "file:///tmp/rbg-fuzz", "layout": "template", "url_template": "{url}/{filename}",
             "keys": [str(key)], "operator": "org-a"},
            {"name": "rb2", "url": "http://127.0.0.1:9/rb", "keys": [str(key)]},
        ],
        "repository": [{"name": "debian", "match": ["deb.example/debian"], "gate": True, "threshold": 1,
                        "max_conflicts": 0, "mode": "audit", "rebuilders": ["rb1"]}],
        "allow": [{"package": "linux-*", "version": "6.*", "expires": dt.date(2099, 12, 31), "reason": "kernel"}],
        "halt": {"feeds": ["file:///tmp/rbg-halt-feed"], "threshold": 1, "feed_threshold": 1, "max_age": 60,
                 "stale": "warn", "state_dir": "/tmp/rbg-halt", "signer": [{"name": "alice", "keys": [str(key)]}]},
    }


def _paths(tree, path=()):
    """Every key path into dicts and lists of a policy dict."""
    out = [path]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, path + (i,))
    return out


_seconds = st.sampled_from([math.inf, -math.inf, math.nan, 1e300, 0.0, -0.0, 1e-300, 5, 0.5]) | st.floats()
_VALUE_FOR = {  # values worth trying per key name, on top of any TOML value
    "url_template": _template, "deadline": _seconds, "connect_timeout": _seconds, "read_timeout": _seconds, "threshold": _small_int, "max_conflicts": _small_int, "feed_threshold": _small_int,
    "name": st.sampled_from(["rb1", "rb2", "rb3", "", " ", "alice"]), "operator": st.sampled_from(["org-a", "rb2"]),
    "layout": st.sampled_from(LAYOUTS), "mode": st.sampled_from(MODES), "url": st.sampled_from(
        ["file:///tmp", "http://h", "https://h/", "ftp://h", "file://"]),
    "rebuilders": st.sampled_from([["rb1"], ["rb2"], ["rb1", "rb2"], [], ["zz"]]),
}


@fuzz_settings(400)
@given(data=st.data())
def test_random_policy_dicts_give_a_policy_or_a_config_error(key, data) -> None:
    raw = _base(key)
    for _ in range(data.draw(st.integers(1, 4), label="rounds")):
        path = data.draw(st.sampled_from(_paths(raw)[1:]), label="path")
        parent = raw
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        op = data.draw(st.sampled_from(["set", "set", "set", "drop", "add"]), label="op")
        if op == "drop":
            del parent[last]
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][data.draw(st.sampled_from(["colour", "keys", "url_template", "operator"]) | _text)] = \
                data.draw(_values)
        else:
            name = last if isinstance(last, str) else ""
            parent[last] = data.draw(_VALUE_FOR.get(name, _values) | _values if name in _VALUE_FOR else _values,
                                     label="value")
    path = Path("/etc/rebuildgate/fuzz.toml")
    try:
        policy = parse_policy(raw, path)
    except ConfigError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    check_policy(policy)


# ---------------------------------------------------------------------------
# TOML-ish text

_KEYS = ["threshold", "max_conflicts", "mode", "gate_unlisted", "log", "connect_timeout", "read_timeout",
         "deadline", "max_bytes", "max_workers", "proxy", "cache_dir", "cache_ttl", "name", "url", "layout",
         "url_template", "keys", "gpg_keys", "gpg_keyring", "operator", "match", "gate", "rebuilders", "package",
         "version", "expires", "reason", "feeds", "feed_threshold", "max_age", "stale", "state_dir", "colour"]
_HEADERS = ["[fetch]", "[[rebuilder]]", "[[repository]]", "[[allow]]", "[halt]", "[[halt.signer]]", "[x]",
            "[[fetch]]", "[rebuilder]"]


def _literals(key: Path):
    return st.sampled_from([
        "1", "2", "0", "-1", "1.5", "inf", "nan", "-inf", "1e300", "true", "false", '""', '"enforce"', '"audit"',
        '"template"', '"rebuilderd"', f'["{key}"]', f'"{key}"', '"http://127.0.0.1:9/rb"', '"file:///tmp/rbg"',
        '"{url}/{filename}"', '"{url.real}"', '"{url[0]}"', "[]", "[1, 2]", "{}", "{ a = 1 }", "2030-01-01",
        "1979-05-27T07:32:00Z", "07:32:00", '"rb1"', '["rb1"]', '["*"]', '"A"', "'''x'''", '"\\u0000"',
    ]) | st.text(max_size=10).map(json.dumps)


def _toml_text(key: Path):
    line = (st.tuples(st.sampled_from(_KEYS), _literals(key)).map(lambda kv: f"{kv[0]} = {kv[1]}")
            | st.sampled_from(_HEADERS) | st.text(max_size=20))
    return st.lists(line, max_size=25).map("\n".join)


@fuzz_settings(400)
@given(data=st.data())
def test_random_policy_text_gives_a_policy_or_a_config_error(key, tmp_path_factory, data) -> None:
    text = data.draw(_toml_text(key), label="text")
    prefix = data.draw(st.sampled_from(["", 'threshold = 1\n[[rebuilder]]\nname = "rb1"\n'
                                            f'url = "file:///tmp/rbg"\nkeys = ["{key}"]\n']), label="prefix")
    raw = (prefix + text).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans(), label="binary-junk"):
        raw += data.draw(st.binary(max_size=16), label="junk")
    path = tmp_path_factory.getbasetemp() / "fuzz-policy.toml"
    path.write_bytes(raw)
    try:
        policy = load_policy(path)
    except ConfigError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    check_policy(policy)
