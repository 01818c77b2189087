"""A broken policy is an error naming the file and the key, on one line, with
exit status 2 from `rebuildgate check-config` and `rebuildgate verify`.

The wrong-type cases are generated from the policy reference in README.md:
every documented key gets a value of every other TOML type.  Most cases run
the command's ``main()`` in-process (fast); a sample, and everything about
key files, runs the real command in a subprocess.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from rebuildgate.cli import main
from rebuildgate.errors import ConfigError
from rebuildgate.policy import load_policy

from tests.support.keys import make_key

from .helpers import cli

FILE = "hello_1.0-1_all.deb"
SHA = "a" * 64

# One sample of each TOML type, as TOML source.
SAMPLES = {
    "string": '"x"',
    "integer": "7",
    "float": "1.5",
    "boolean": "true",
    "array": '["x"]',
    "array-of-integers": "[1, 2]",
    "inline-table": "{ a = 1 }",
    "offset-datetime": "1979-05-27T07:32:00Z",
    "local-datetime": "1979-05-27T07:32:00",
    "local-date": "1979-05-27",
    "local-time": "07:32:00",
}
INT, NUM, STR, BOOL = {"integer"}, {"integer", "float"}, {"string"}, {"boolean"}
LIST = {"array", "string"}  # a single string is taken as a one-item list
DATE = {"local-date", "offset-datetime", "local-datetime"}

# (section, key) -> accepted types, from the README's policy reference.
SCHEMA = {
    ("", "threshold"): INT, ("", "max_conflicts"): INT, ("", "mode"): STR, ("", "gate_unlisted"): BOOL,
    ("", "log"): STR,
    ("fetch", "connect_timeout"): NUM, ("fetch", "read_timeout"): NUM, ("fetch", "deadline"): NUM,
    ("fetch", "max_bytes"): INT, ("fetch", "max_workers"): INT, ("fetch", "proxy"): STR,
    ("fetch", "cache_dir"): STR, ("fetch", "cache_ttl"): INT,
    ("rebuilder", "name"): STR, ("rebuilder", "url"): STR, ("rebuilder", "layout"): STR,
    ("rebuilder", "url_template"): STR, ("rebuilder", "keys"): LIST, ("rebuilder", "gpg_keys"): LIST,
    ("rebuilder", "gpg_keyring"): STR, ("rebuilder", "operator"): STR,
    ("repository", "name"): STR, ("repository", "match"): LIST, ("repository", "gate"): BOOL,
    ("repository", "threshold"): INT, ("repository", "max_conflicts"): INT, ("repository", "mode"): STR,
    ("repository", "rebuilders"): LIST,
    ("allow", "package"): STR, ("allow", "version"): STR, ("allow", "expires"): DATE, ("allow", "reason"): STR,
    ("halt", "feeds"): LIST, ("halt", "threshold"): INT, ("halt", "feed_threshold"): INT,
    ("halt", "max_age"): INT, ("halt", "stale"): STR, ("halt", "state_dir"): STR,
    ("halt.signer", "name"): STR, ("halt.signer", "keys"): LIST, ("halt.signer", "gpg_keys"): LIST,
    ("halt.signer", "gpg_keyring"): STR,
}
TABLES = {"fetch": "table", "rebuilder": "array of tables", "repository": "array of tables",
          "allow": "array of tables", "halt": "table", "halt.signer": "array of tables"}


def key_path(section: str, key: str) -> str:
    """How the error names a key."""
    if section in ("", "fetch", "halt"):
        return f"{section}.{key}" if section else key
    index = {"rebuilder": "rebuilder[0]", "repository": "repository[0]", "allow": "allow[0]",
             "halt.signer": "halt.signer[0]"}[section]
    name = {"rebuilder": " (rb1)", "halt.signer": " (alice)"}.get(section, "")
    return f"{index}.{key}" if key == "name" or not name else f"{index}{name}.{key}"


class Base:
    """A valid policy using every section, as TOML literals that a case overrides."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        key = make_key(directory / "keys", "ed25519", "rb1")
        (directory / "tree").mkdir(exist_ok=True)
        self.key = key.public_pem
        q = lambda s: f'"{s}"'  # noqa: E731
        self.sections: dict[str, dict[str, str]] = {
            "": {"threshold": "1", "max_conflicts": "0", "mode": q("enforce"), "gate_unlisted": "true",
                 "log": q(directory / "decisions.log")},
            "fetch": {"connect_timeout": "1.0", "read_timeout": "1.0", "deadline": "2.0", "max_bytes": "1048576",
                      "max_workers": "4", "proxy": q("http://127.0.0.1:9"), "cache_dir": q(""), "cache_ttl": "0"},
            "rebuilder": {"name": q("rb1"), "url": q(f"file://{directory}/tree"), "layout": q("template"),
                          "url_template": q("{url}/{filename}.link"), "keys": f"[{q(self.key)}]",
                          "operator": q("org-a")},
            "repository": {"name": q("debian"), "match": '["deb.example/debian"]', "gate": "true", "threshold": "1",
                           "max_conflicts": "0", "mode": q("enforce"), "rebuilders": '["rb1"]'},
            "allow": {"package": q("linux-*"), "version": q("6.*"), "expires": "2099-12-31", "reason": q("kernel")},
            "halt": {"feeds": f'["file://{directory}/halt-feed.json"]', "threshold": "1", "feed_threshold": "1",
                     "max_age": "86400", "stale": q("warn"), "state_dir": q(directory / "halt-state")},
            "halt.signer": {"name": q("alice"), "keys": f"[{q(self.key)}]"},
        }

    def render(self, section: str | None = None, key: str | None = None, value: str | None = None,
               drop: str | None = None) -> str:
        """The policy, with sections[section][key] = value (added if absent),
        or with a whole table replaced by a plain `key = value` (section None)."""
        sections = {s: dict(kv) for s, kv in self.sections.items()}
        top_extra: dict[str, str] = {}
        if section is not None and key is not None:
            sections[section][key] = value or ""
        elif key is not None:  # a table itself with a wrong type
            if "." in key:
                parent, child = key.split(".")
                sections[parent][child] = value or ""
            else:
                top_extra[key] = value or ""
            sections.pop(key, None)
            if key == "halt":
                sections.pop("halt.signer", None)
        if drop:
            sections.pop(drop, None)
        lines = [f"{k} = {v}" for k, v in {**sections.pop(""), **top_extra}.items()]
        for name, kv in sections.items():
            header = f"[[{name}]]" if TABLES[name] == "array of tables" else f"[{name}]"
            lines += ["", header] + [f"{k} = {v}" for k, v in kv.items()]
        return "\n".join(lines) + "\n"

    def copy(self, directory: Path | None = None) -> "Base":
        """The same policy (same key), to change before rendering, written to *directory*."""
        other = Base.__new__(Base)
        other.dir, other.key = directory or self.dir, self.key
        other.sections = {s: dict(kv) for s, kv in self.sections.items()}
        return other

    def write(self, text: str, name: str = "policy.toml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return Base(tmp_path_factory.mktemp("policy-matrix"))


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def problems_with(path: Path, key: str, words: str = "") -> list[str]:
    """Everything wrong with how the library and both commands report a broken
    policy at *path* whose culprit is *key* (empty list: all good)."""
    bad = []
    try:
        load_policy(path)
        bad.append("load_policy accepted it")
    except ConfigError as e:
        if e.key != key:
            bad.append(f"load_policy blamed key {e.key!r}, not {key!r}: {e}")
        if str(path) not in str(e) or "\n" in str(e):
            bad.append(f"load_policy message does not name the file on one line: {e!r}")
        if words and words not in str(e):
            bad.append(f"load_policy message lacks {words!r}: {e}")
    except Exception as e:  # noqa: BLE001 - this is what the test looks for
        bad.append(f"load_policy raised {type(e).__name__}: {e}")
    for argv in (["check-config", "--policy", str(path)],
                 ["verify", "--policy", str(path), "--artifact", FILE, "--sha256", SHA]):
        try:
            code, out, err = run_main(*argv)
        except Exception as e:  # noqa: BLE001
            bad.append(f"{argv[0]}: main() raised {type(e).__name__}: {e}")
            continue
        lines = err.strip().splitlines()
        if code != 2 or out or len(lines) != 1 or str(path) not in err or key not in err:
            bad.append(f"{argv[0]}: exit {code}, stdout {out!r}, stderr {err!r}")
    return bad


def test_the_base_policy_is_valid(base) -> None:
    path = base.write(base.render())
    code, out, err = run_main("check-config", "--policy", str(path))
    assert code == 0 and "policy OK" in out, err


@pytest.mark.parametrize("section,key", list(SCHEMA), ids=[key_path(s, k) for s, k in SCHEMA])
def test_every_key_with_every_wrong_type(base, section, key) -> None:
    failures = []
    for type_name, literal in SAMPLES.items():
        if type_name in SCHEMA[(section, key)]:
            continue
        path = base.write(base.render(section, key, literal))
        failures += [f"{key_path(section, key)} = {literal}: {p}" for p in problems_with(path, key_path(section, key))]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("table", list(TABLES))
def test_every_table_with_every_wrong_type(base, table) -> None:
    failures = []
    for type_name, literal in SAMPLES.items():
        if type_name == "inline-table" and TABLES[table] == "table":
            continue  # an inline table is a table
        if type_name.startswith("array") and TABLES[table] == "array of tables":
            expected = f"{table}[0]"  # an array, but not of tables: its first item is wrong
        else:
            expected = table
        path = base.write(base.render(None, table, literal))
        failures += [f"{table} = {literal}: {p}" for p in problems_with(path, expected)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("section", ["", "fetch", "rebuilder", "repository", "allow", "halt", "halt.signer"])
def test_unknown_keys_at_every_level(base, section) -> None:
    path = base.write(base.render(section, "colour", '"red"'))
    assert problems_with(path, key_path(section, "colour"), "unknown key") == []


def test_unknown_table(base) -> None:
    path = base.write(base.render() + "\n[fetcher]\ndeadline = 1.0\n")
    assert problems_with(path, "fetcher", "unknown key") == []


BAD_VALUES = [
    ("", "threshold", "0"), ("", "threshold", "-1"), ("", "threshold", "2"), ("", "threshold", "9223372036854775807"),
    ("", "max_conflicts", "-1"),
    ("repository", "threshold", "0"), ("repository", "threshold", "-3"), ("repository", "threshold", "2"),
    ("repository", "max_conflicts", "-1"),
    ("halt", "threshold", "0"), ("halt", "threshold", "2"), ("halt", "feed_threshold", "0"),
    ("fetch", "deadline", "0"), ("fetch", "deadline", "-1.0"), ("fetch", "deadline", "nan"),
    ("fetch", "deadline", "inf"), ("fetch", "deadline", "1e300"), ("fetch", "connect_timeout", "0"),
    ("fetch", "read_timeout", "-inf"), ("fetch", "max_workers", "0"), ("fetch", "max_bytes", "0"),
    ("fetch", "cache_ttl", "-1"),
    ("rebuilder", "url_template", '"{url"'), ("rebuilder", "url_template", '"{nope}/x"'),
    ("rebuilder", "url_template", '"{url.real}/x"'), ("rebuilder", "url_template", '"{url[a]}/x"'),
]


@pytest.mark.parametrize("section,key,value", BAD_VALUES, ids=[f"{key_path(s, k)}={v}" for s, k, v in BAD_VALUES])
def test_impossible_values(base, section, key, value) -> None:
    path = base.write(base.render(section, key, value))
    assert problems_with(path, key_path(section, key)) == []


# ---------------------------------------------------------------------------
# Key files and keyrings, through the real command


def _both(policy: Path, user: int | None = None, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    argvs = [("check-config", "--policy", policy), ("verify", "--policy", policy, "--artifact", FILE, "--sha256", SHA)]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda a: cli(*a, timeout=60, user=user, env=env), argvs))


def assert_policy_error(results, policy: Path, key: str, words: str) -> None:
    for r in results:
        err = r.stderr.decode()
        assert r.returncode == 2, (r.args, r.returncode, err)
        assert r.stdout == b"", r.stdout
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{r.args[3]}: the error is not one line: {err!r}"
        assert str(policy) in lines[0] and key in lines[0] and words in lines[0], lines[0]


def _keyring_policy(base: Base, keyring: Path) -> str:
    b = base.copy()
    del b.sections["rebuilder"]["keys"]
    b.sections["rebuilder"]["gpg_keys"] = '["5863835E5EC8E640FA24410F069EDC1D59B58507"]'
    b.sections["rebuilder"]["gpg_keyring"] = f'"{keyring}"'
    return b.render()


KEY_FILES = {
    # name: (what to put where the key is, expected key, words)
    "missing": (lambda d: d / "nope.pem", "rebuilder[0] (rb1).keys", "does not exist"),
    "a-directory": (lambda d: d, "rebuilder[0] (rb1).keys", "not a file"),
    "empty": (lambda d: _write(d / "empty.pem", b""), "rebuilder[0] (rb1).keys", "cannot load key file"),
    "garbage": (lambda d: _write(d / "junk.pem", b"\x00\xff" * 100), "rebuilder[0] (rb1).keys", "cannot load key file"),
    "a-private-key": (lambda d: make_key(d / "priv", "ed25519", "p").private_pem, "rebuilder[0] (rb1).keys",
                      "cannot load key file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(KEY_FILES))
def test_bad_key_files(base, tmp_path, case) -> None:
    make, key, words = KEY_FILES[case]
    b = base.copy()
    b.sections["rebuilder"]["keys"] = f'["{make(tmp_path)}"]'
    policy = tmp_path / "policy.toml"
    policy.write_text(b.render())
    assert_policy_error(_both(policy), policy, key, words)


def test_no_keys_at_all(base, tmp_path) -> None:
    b = base.copy()
    b.sections["rebuilder"]["keys"] = "[]"
    policy = tmp_path / "policy.toml"
    policy.write_text(b.render())
    assert_policy_error(_both(policy), policy, "rebuilder[0] (rb1).keys", "at least one key")


@pytest.mark.parametrize("content", [b"", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n",
                                     b"\x99\x00\x00junk"], ids=["empty", "empty-armor", "garbage"])
def test_empty_keyring(base, tmp_path, content) -> None:
    keyring = _write(tmp_path / "keyring.gpg", content)
    policy = tmp_path / "policy.toml"
    policy.write_text(_keyring_policy(base, keyring))
    assert_policy_error(_both(policy), policy, "rebuilder[0] (rb1).gpg_keyring", "no OpenPGP public keys")


def test_unreadable_key_file(base) -> None:
    """As root everything is readable, so the command runs as nobody then."""
    root = os.geteuid() == 0
    directory = Path(tempfile.mkdtemp(prefix="rbg-unreadable-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        key = directory / "rb1.pem"
        shutil.copy(base.key, key)
        key.chmod(0o600 if root else 0o000)
        b = base.copy()
        b.sections["rebuilder"]["keys"] = f'["{key}"]'
        b.sections["halt.signer"]["keys"] = f'["{key}"]'
        b.sections[""]["log"] = f'"{directory}/decisions.log"'
        policy = directory / "policy.toml"
        policy.write_text(b.render())
        policy.chmod(0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory), "LC_ALL": "C.UTF-8"}
        results = _both(policy, user=65534 if root else None, env=env)
        assert_policy_error(results, policy, "rebuilder[0] (rb1).keys", "not readable")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# A sample of the generated cases through the real command, to tie the
# in-process checks above to the installed entry point.
SAMPLED = [("", "threshold", '"2"'), ("fetch", "deadline", '"30"'), ("rebuilder", "keys", "7"),
           ("repository", "gate", '"yes"'), ("allow", "expires", '"2030-01-01"'), ("halt", "stale", "1"),
           ("rebuilder", "colour", '"red"'), ("fetch", "deadline", "inf")]


@pytest.mark.parametrize("section,key,value", SAMPLED, ids=[f"{key_path(s, k)}={v}" for s, k, v in SAMPLED])
def test_sampled_errors_through_the_real_command(base, tmp_path, section, key, value) -> None:
    policy = base.copy(tmp_path).write(base.render(section, key, value))
    assert_policy_error(_both(policy), policy, key_path(section, key), "")
