"""The admin's policy file: load, validate, and resolve it per artifact.

One TOML file (``/etc/rebuildgate/policy.toml``) is shared by the apt and dnf
front ends and the ``rebuildgate`` command.  Validation is strict because a
typo in a trust policy must never silently weaken it: unknown keys, wrong
types and impossible thresholds are errors that name the file and the key
(:class:`~rebuildgate.errors.ConfigError`, exit status 2).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import repoid
from .decide import Rule
from .errors import ConfigError
from .model import Artifact

DEFAULT_POLICY = Path("/etc/rebuildgate/policy.toml")
POLICY_ENV = "REBUILDGATE_POLICY"

LAYOUTS = ("package-rebuilder", "rebuilderd", "template")
MODES = ("enforce", "audit")
URL_SCHEMES = ("http://", "https://", "file://")
TEMPLATE_FIELDS = ("url", "source", "name", "version", "upstream_version", "arch", "filename", "sha256")

#: in-toto Statement predicate types, and what each says about a file it
#: lists as a subject (the README's "What counts as a vote" explains them).
PREDICATE_LINK_V03 = "https://in-toto.io/attestation/link/v0.3"  # "this step produced it"
PREDICATE_SLSA_V01 = "https://slsa.dev/provenance/v0.1"  # "this builder built it"
PREDICATE_SLSA_V02 = "https://slsa.dev/provenance/v0.2"
PREDICATE_SLSA_V1 = "https://slsa.dev/provenance/v1"
PREDICATE_WITNESS_COLLECTION = "https://witness.testifysec.com/attestation-collection/v0.1"  # witness run
#: What a rebuilder's Statements may be when its ``predicate_types`` is not
#: set: each of these is a build or step record whose subjects are the files
#: the build produced.  Anything else (an SBOM, a vulnerability scan, a test
#: result) names a file without claiming to have built it.
DEFAULT_PREDICATE_TYPES = (PREDICATE_LINK_V03, PREDICATE_SLSA_V01, PREDICATE_SLSA_V02, PREDICATE_SLSA_V1,
                           PREDICATE_WITNESS_COLLECTION)


@dataclass(frozen=True)
class LayoutKeys:
    """Keys taken out of an in-toto layout's ``keys``, by keyid (nothing else
    of the layout is read or verified)."""

    layout: Path
    keyids: tuple[str, ...]


@dataclass(frozen=True)
class Rebuilder:
    """One rebuilder the admin trusts, and how to reach its evidence."""

    name: str
    url: str
    layout: str = "package-rebuilder"
    url_template: str | None = None
    keys: tuple[Path, ...] = ()
    gpg_keys: tuple[str, ...] = ()
    gpg_keyring: Path | None = None
    operator: str = ""  # defaults to the name
    layout_keys: tuple[LayoutKeys, ...] = ()
    predicate_types: tuple[str, ...] = DEFAULT_PREDICATE_TYPES

    @property
    def identity(self) -> str:
        return self.operator or self.name


@dataclass(frozen=True)
class FetchSettings:
    """Limits that keep a slow or hostile rebuilder from costing more than its vote."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0
    max_bytes: int = 2 * 1024 * 1024
    max_workers: int = 256
    proxy: str | None = None  # explicit proxy; None = the package manager's
    cache_dir: Path | None = Path("/var/cache/rebuildgate")
    #: Evidence for an exact file does not change: a day covers an update
    #: tonight and the upgrade tomorrow (each use verifies it again anyway).
    cache_ttl: int = 86400
    #: An evidence bundle (``rebuildgate collect``): every rebuilder's
    #: documents are read from ``<bundle>/<rebuilder name>/<layout path>``
    #: (:func:`rebuildgate.layouts.bundle_path`) before its URL is tried.
    bundle: Path | None = None
    #: No network request at all: evidence only from the bundle and
    #: ``file://`` directories (Qubes dom0, air-gapped hosts).
    offline: bool = False
    #: After ``apt-get update``, fetch the evidence for upgradable packages
    #: into the cache in the background (:mod:`rebuildgate.warmup`).
    warm_up: bool = False
    warm_up_packages: int = 2000
    warm_up_seconds: float = 300.0


@dataclass(frozen=True)
class RepositoryRule:
    """Per-repository overrides; the first rule whose pattern matches wins.

    ``match`` holds fnmatch patterns on the repository id
    (:mod:`rebuildgate.repoid` defines it and checks the patterns).
    """

    name: str
    match: tuple[str, ...]
    gate: bool = True
    threshold: int | None = None
    max_conflicts: int | None = None
    mode: str | None = None
    rebuilders: tuple[str, ...] | None = None

    def matching_pattern(self, repo_id: str | None) -> str | None:
        """The first of this rule's patterns that matches *repo_id*, if any."""
        return next((p for p in self.match if repoid.matches(repo_id, p)), None)


@dataclass(frozen=True)
class AllowEntry:
    """A package the admin lets through without enough votes, until ``expires``."""

    package: str  # fnmatch pattern on the package name
    version: str | None  # fnmatch pattern on the version, None = any
    expires: _dt.date
    reason: str
    sha256: tuple[str, ...] = ()  # only these exact files, if given

    def matches(self, artifact: Artifact, today: _dt.date) -> bool:
        """Whether this entry lets *artifact* through.  The name and version
        are the package file's own whenever the file is at hand (see
        :meth:`Artifact.with_file_identity`), never just the index's."""
        if today > self.expires:
            return False
        if self.sha256 and artifact.sha256.lower() not in self.sha256:
            return False
        name = artifact.name or artifact.filename
        if not fnmatch.fnmatchcase(name, self.package):
            return False
        return self.version is None or fnmatch.fnmatchcase(artifact.version or "", self.version)


@dataclass(frozen=True)
class Resolution:
    """The rule and the rebuilders that apply to one artifact."""

    rule: Rule
    rebuilders: tuple[Rebuilder, ...]
    repository: str | None  # name of the matching [[repository]] rule


@dataclass(frozen=True)
class HaltSigner:
    """A developer whose signature counts towards a halt (same key kinds as rebuilders)."""

    name: str
    keys: tuple[Path, ...] = ()
    gpg_keys: tuple[str, ...] = ()
    gpg_keyring: Path | None = None
    layout_keys: tuple[LayoutKeys, ...] = ()


@dataclass(frozen=True)
class HaltSettings:
    """Where halt statements come from and who may sign them (``[halt]``)."""

    feeds: tuple[str, ...]
    threshold: int  # K distinct signers make a halt (or a lift) count
    signers: tuple[HaltSigner, ...]
    feed_threshold: int = 1  # signers needed on a feed document itself
    max_age: int = 86400  # seconds without any successful feed refresh before `stale` applies
    stale: str = "block"  # or "warn"
    state_dir: Path = Path("/var/lib/rebuildgate")


@dataclass(frozen=True)
class Policy:
    path: Path
    threshold: int
    max_conflicts: int
    mode: str
    rebuilders: tuple[Rebuilder, ...]
    repositories: tuple[RepositoryRule, ...] = ()
    gate_unlisted: bool = True
    allow: tuple[AllowEntry, ...] = ()
    fetch: FetchSettings = field(default_factory=FetchSettings)
    log: Path | None = None
    halt: HaltSettings | None = None
    #: Things that load but look wrong (check-config prints them), e.g. a
    #: pattern that names a path inside an archive.
    warnings: tuple[str, ...] = ()

    def rule_for(self, repo_id: str | None) -> tuple[RepositoryRule | None, str | None]:
        """The first ``[[repository]]`` rule matching *repo_id*, and the pattern that matched."""
        for rule in self.repositories:
            pattern = rule.matching_pattern(repo_id)
            if pattern is not None:
                return rule, pattern
        return None, None

    def resolve(self, artifact: Artifact, today: _dt.date | None = None) -> Resolution:
        """Which rule governs *artifact*: its repository's, or the global one."""
        today = today or _dt.date.today()
        repo_rule, _ = self.rule_for(artifact.repo)
        gated = repo_rule.gate if repo_rule else self.gate_unlisted
        rebuilders = self.rebuilders
        threshold, max_conflicts, mode = self.threshold, self.max_conflicts, self.mode
        if repo_rule:
            if repo_rule.rebuilders is not None:
                wanted = set(repo_rule.rebuilders)
                rebuilders = tuple(r for r in self.rebuilders if r.name in wanted)
            threshold = repo_rule.threshold if repo_rule.threshold is not None else threshold
            max_conflicts = repo_rule.max_conflicts if repo_rule.max_conflicts is not None else max_conflicts
            mode = repo_rule.mode or mode
        allowed = next((a for a in self.allow if a.matches(artifact, today)), None)
        rule = Rule(
            threshold=threshold,
            max_conflicts=max_conflicts,
            mode=mode,
            operators={r.name: r.identity for r in rebuilders},
            gated=gated,
            allowlisted=(f"{allowed.package} until {allowed.expires}: {allowed.reason}" if allowed else None),
        )
        return Resolution(rule, rebuilders if gated else (), repo_rule.name if repo_rule else None)

    def describe(self, keys: Mapping[str, list[str]] | None = None) -> list[str]:
        """Plain-words lines for ``rebuildgate check-config``; *keys* gives
        each rebuilder's loaded keys (with their keyids) by name."""
        lines = [f"policy {self.path}", f"mode: {self.mode}" + (
            " (blocks nothing; logs what would be blocked)" if self.mode == "audit" else " (blocks what fails)")]
        ops = len({r.identity for r in self.rebuilders})
        lines.append(f"a package needs {self.threshold} of {ops} independent rebuilder operators to agree, "
                     f"with at most {self.max_conflicts} conflicting")
        for r in self.rebuilders:
            op = f", operator {r.operator}" if r.operator else ""
            lines.append(f"  rebuilder {r.name}{op}: {r.url} ({r.layout})")
            if keys is not None and r.name in keys:
                lines += [f"    key {line}" for line in keys[r.name]]
            else:
                lines += [f"    key {k}" for k in r.keys] + [f"    key OpenPGP {fp}" for fp in r.gpg_keys]
                lines += [f"    key {lk.layout} key {kid}" for lk in r.layout_keys for kid in lk.keyids]
            statements = (", ".join(r.predicate_types) if r.predicate_types
                          else "none (only links count)")
            lines.append(f"    in-toto Statements accepted: {statements}")
        for rr in self.repositories:
            if not rr.gate:
                lines.append(f"repository {rr.name} ({', '.join(rr.match)}): not gated")
                continue
            lines.append(
                f"repository {rr.name} ({', '.join(rr.match)}): gated, threshold "
                f"{rr.threshold if rr.threshold is not None else self.threshold}, max_conflicts "
                f"{rr.max_conflicts if rr.max_conflicts is not None else self.max_conflicts}, mode "
                f"{rr.mode or self.mode}"
                + (f", rebuilders {', '.join(rr.rebuilders)}" if rr.rebuilders is not None else ""))
        lines.append("other repositories: " + ("gated by the global rule" if self.gate_unlisted else "not gated"))
        for a in self.allow:
            pinned = f" only sha256 {', '.join(d[:16] + '...' for d in a.sha256)}" if a.sha256 else ""
            lines.append(f"allowlist: {a.package} {a.version or '(any version)'}{pinned} until {a.expires}: "
                         f"{a.reason}")
        f = self.fetch
        lines.append(f"fetch: connect {f.connect_timeout}s, read {f.read_timeout}s, deadline {f.deadline}s, "
                     f"max {f.max_bytes} bytes, proxy {f.proxy or 'from the package manager/environment'}, "
                     f"cache {f.cache_dir or 'off'}")
        if f.warm_up:
            lines.append(f"warm-up after apt-get update: on (at most {f.warm_up_packages} packages, "
                         f"{f.warm_up_seconds:g}s; evidence into the cache, verified when used)")
        if f.bundle is not None or f.offline:
            lines.append(f"evidence bundle: {f.bundle or 'none'} (each rebuilder's documents read from "
                         f"<bundle>/<rebuilder name>/ first)" + (
                             "; offline: no network request is ever made" if f.offline else
                             "; a document missing from it is fetched from the rebuilder"))
        if self.halt:
            h = self.halt
            lines.append(f"halts: {h.threshold} of {len(h.signers)} signers ({', '.join(s.name for s in h.signers)}) "
                         f"stop a package; feeds {', '.join(h.feeds)}; if no feed refreshed for {h.max_age}s: "
                         f"{h.stale}")
        return lines


def policy_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--policy``, else ``$REBUILDGATE_POLICY``, else ``/etc/rebuildgate/policy.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(POLICY_ENV)
    return Path(env) if env else DEFAULT_POLICY


def load_policy(path: str | os.PathLike[str] | None = None, check_files: bool = True) -> Policy:
    """Read and validate the policy file; raise ConfigError naming file and key.

    ``check_files=False`` does not require the key files, keyrings and
    layouts it names to exist: for ``rebuildgate collect``, which verifies
    nothing, so that the machine that collects (a Qubes UpdateVM) can hold
    the very policy file of the machine that verifies, without its keys.
    Everything else is validated as always.
    """
    p = policy_path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, None, "policy file does not exist (write one, or pass --policy)") from None
    except OSError as e:
        raise ConfigError(p, None, f"cannot read policy file: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(p, None, f"not UTF-8 text: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(p, None, f"not valid TOML: {e}") from None
    return parse_policy(data, p, check_files)


class _Reader:
    """Typed access to one TOML table, reporting errors with their key path."""

    def __init__(self, path: Path, table: Any, where: str) -> None:
        self.path, self.where = path, where
        if not isinstance(table, dict):
            raise ConfigError(path, where or None, f"must be a table, not {_tname(table)}")
        self.table = table
        self.used: set[str] = set()
        self.check_files = True  # see load_policy

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                raise self.error(name, "is required")
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a threshold of `true` is a typo, not 1.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {_kinds(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_kinds(kinds)}, not {_tname(value)}")
        return value

    def string(self, name: str, default: str | None = None, required: bool = False,
               choices: tuple[str, ...] | None = None) -> Any:
        value = self.get(name, str, default, required)
        if value is None:
            return None
        if required and not value.strip():
            raise self.error(name, "must not be empty")
        if choices and value not in choices:
            raise self.error(name, f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int | None = 0,
                required: bool = False) -> Any:
        value = self.get(name, int, default, required)
        if value is not None and minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, not {value}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0, maximum: float = 3600.0) -> float:
        value = self.get(name, (int, float), default)
        if not minimum < value <= maximum:  # also refuses nan and inf
            raise self.error(name, f"must be greater than {minimum:g} and at most {maximum:g} seconds, not {value}")
        return float(value)

    def strings(self, name: str, default: tuple[str, ...] | None = ()) -> Any:
        value = self.get(name, (list, str), None)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.error(name, f"item {i} must be a non-empty string, not {_tname(item)}")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (check its spelling in the README's policy reference)")


def _tname(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "a table", _dt.date: "a date", _dt.datetime: "a date-time"}.get(type(value), type(value).__name__)


def _kinds(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table", _dt.date: "a date (YYYY-MM-DD)"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _file(top: _Reader, r: _Reader, name: str, value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        path = top.path.parent / path
    if not top.check_files:
        return path
    if not path.is_file():
        raise r.error(name, f"key file {path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise r.error(name, f"key file {path} is not readable")
    return path


def _check_template(r: _Reader, template: str) -> None:
    """Only plain ``{name}`` placeholders from TEMPLATE_FIELDS: no attributes,
    indexes, conversions or format specs (str.format would evaluate them)."""
    allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise r.error("url_template", f"broken placeholder ({e}); use {allowed}") from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name not in TEMPLATE_FIELDS or spec or conversion:
            raise r.error("url_template", f"unknown placeholder {{{field_name}}}; use {allowed}")
    if not template.startswith("{url}"):
        raise r.error("url_template", "must start with {url}, so evidence stays on the rebuilder's own host")


@dataclass(frozen=True)
class _KeySpec:
    keys: tuple[Path, ...]
    gpg_keys: tuple[str, ...]
    gpg_keyring: Path | None
    layout_keys: tuple[LayoutKeys, ...]


def _layout_keys(top: _Reader, r: _Reader) -> tuple[LayoutKeys, ...]:
    """``layout_keys = { layout = "root.layout", keyids = ["..."] }`` (or a list of such tables)."""
    value = r.get("layout_keys", (dict, list), None)
    if value is None:
        return ()
    out = []
    for i, table in enumerate([value] if isinstance(value, dict) else value):
        t = _Reader(top.path, table, r.key("layout_keys") + (f"[{i}]" if isinstance(value, list) else ""))
        layout = _file(top, t, "layout", t.string("layout", required=True))
        keyids = t.strings("keyids", None)
        if not keyids:
            raise t.error("keyids", "is required: the keyids of the layout's keys to trust")
        for keyid in keyids:
            if not all(c in "0123456789abcdefABCDEF" for c in keyid):
                raise t.error("keyids", f"{keyid!r} is not a hexadecimal keyid")
        t.finish()
        out.append(LayoutKeys(layout, tuple(k.lower() for k in keyids)))
    return tuple(out)


def _keys(top: _Reader, r: _Reader, who: str) -> _KeySpec:
    """keys / gpg_keys / gpg_keyring / layout_keys, shared by rebuilders and halt signers."""
    keys = tuple(_file(top, r, "keys", k) for k in r.strings("keys"))
    gpg_keys = tuple(fp.replace(" ", "").upper() for fp in r.strings("gpg_keys"))
    for fp in gpg_keys:
        if len(fp) != 40 or any(c not in "0123456789ABCDEF" for c in fp):
            raise r.error("gpg_keys", f"{fp!r} is not a 40-hex-digit OpenPGP fingerprint")
    keyring_value = r.string("gpg_keyring")
    keyring = _file(top, r, "gpg_keyring", keyring_value) if keyring_value else None
    if gpg_keys and keyring is None:
        raise r.error("gpg_keyring", "is required when gpg_keys is set (the keyring holding those keys)")
    if keyring is not None and not gpg_keys:
        raise r.error("gpg_keys", "is required when gpg_keyring is set (which keys of it to trust)")
    layout_keys = _layout_keys(top, r)
    if not keys and not gpg_keys and not layout_keys:
        raise r.error("keys", f"{who} needs at least one key (keys = [key files], gpg_keys + gpg_keyring, "
                      "or layout_keys)")
    return _KeySpec(keys, gpg_keys, keyring, layout_keys)


def _halt(top: _Reader, table: Any) -> HaltSettings:
    h = _Reader(top.path, table, "halt")
    feeds = h.strings("feeds", None)
    if not feeds:
        raise h.error("feeds", "is required: the halt feeds to read (http(s):// or file:// URLs)")
    for feed in feeds:
        if not feed.startswith(URL_SCHEMES):
            raise h.error("feeds", f"{feed!r} must start with http://, https:// or file://")
    signers = []
    for i, t in enumerate(h.get("signer", list, required=True)):
        r = _Reader(top.path, t, f"halt.signer[{i}]")
        name = r.string("name", required=True)
        r.where = f"halt.signer[{i}] ({name})"
        spec = _keys(top, r, "a halt signer")
        r.finish()
        signers.append(HaltSigner(name, spec.keys, spec.gpg_keys, spec.gpg_keyring, spec.layout_keys))
    if not signers:
        raise h.error("signer", "at least one [[halt.signer]] is required")
    if len({s.name for s in signers}) != len(signers):
        raise h.error("signer", "two halt signers have the same name")
    threshold = h.integer("threshold", required=True, minimum=1)
    if threshold > len(signers):
        raise h.error("threshold", f"is {threshold} but only {len(signers)} halt signer(s) are configured")
    feed_threshold = h.integer("feed_threshold", 1, minimum=1)
    if feed_threshold > len(signers):
        raise h.error("feed_threshold", f"is {feed_threshold} but only {len(signers)} halt signer(s) are configured")
    state_dir = h.string("state_dir", "/var/lib/rebuildgate")
    settings = HaltSettings(
        feeds=feeds, threshold=threshold, signers=tuple(signers), feed_threshold=feed_threshold,
        max_age=h.integer("max_age", 86400, minimum=1), stale=h.string("stale", "block", choices=("block", "warn")),
        state_dir=Path(state_dir),
    )
    h.finish()
    return settings


def _rebuilder(top: _Reader, table: Any, index: int) -> Rebuilder:
    r = _Reader(top.path, table, f"rebuilder[{index}]")
    name = r.string("name", required=True)
    r.where = f"rebuilder[{index}] ({name})"
    url = r.string("url", required=True).rstrip("/")
    if not url.startswith(URL_SCHEMES):
        raise r.error("url", f"must start with http://, https:// or file://, not {url!r}")
    layout = r.string("layout", "package-rebuilder", choices=LAYOUTS)
    if layout == "rebuilderd" and url.startswith("file://"):
        raise r.error("layout", '"rebuilderd" is an HTTP API: use an http(s):// url, or "template" for local files')
    template = r.string("url_template")
    if layout == "template":
        if not template:
            raise r.error("url_template", 'is required with layout = "template"')
        _check_template(r, template)
    elif template:
        raise r.error("url_template", 'is only used with layout = "template"')
    spec = _keys(top, r, "a rebuilder")
    operator = r.string("operator", "")
    predicate_types = r.strings("predicate_types", DEFAULT_PREDICATE_TYPES)
    for ptype in predicate_types:
        if ":" not in ptype or any(c.isspace() for c in ptype):
            raise r.error("predicate_types", f"{ptype!r} is not a predicate type URI "
                          f"(e.g. {PREDICATE_SLSA_V1!r})")
    r.finish()
    return Rebuilder(name, url, layout, template, spec.keys, spec.gpg_keys, spec.gpg_keyring, operator,
                     spec.layout_keys, tuple(dict.fromkeys(predicate_types)))


#: Names inside a bundle that are not rebuilders' directories.
BUNDLE_RESERVED = ("manifest.json", "halt-feeds")


def _bundle_dir(f: _Reader) -> Path | None:
    """``[fetch] bundle``: an absolute directory, or "" / unset for none.

    It need not exist yet (the UpdateVM creates it; on the reading side a
    bundle that is not there simply holds no evidence).
    """
    value = f.string("bundle", "")
    if not value:
        return None
    if not value.startswith("/"):
        raise f.error("bundle", f"must be an absolute directory path, not {value!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise f.error("bundle", "must not contain control characters")
    return Path(value)


def _check_bundle(path: Path, fetch: FetchSettings, rebuilders: tuple[Rebuilder, ...],
                  halt: HaltSettings | None) -> None:
    """What ``bundle`` and ``offline`` need of the rest of the policy.

    With a bundle each rebuilder's name is a directory in it, so it must be
    one plain path segment.  Offline, anything that could only come from
    the network is refused now rather than failing at every install: an
    http(s) rebuilder with no bundle to read, or an http(s) halt feed (halt
    feeds are never read from a bundle: copy the feed in and name it as a
    ``file://`` URL).
    """
    if fetch.bundle is not None:
        for i, rb in enumerate(rebuilders):
            name = rb.name
            if name in (".", "..") or name in BUNDLE_RESERVED or any(c in name for c in "/\\") or any(
                    ord(c) < 32 or c == "\x7f" for c in name):
                raise ConfigError(path, f"rebuilder[{i}].name", f"{name!r} cannot name a directory in the "
                                  f"evidence bundle ([fetch] bundle): use letters, digits, '-', '_' or '.', "
                                  f"and not {' or '.join(BUNDLE_RESERVED)}")
    if not fetch.offline:
        return
    if fetch.bundle is None:
        for i, rb in enumerate(rebuilders):
            if not rb.url.startswith("file://"):
                raise ConfigError(path, "fetch.offline", f"is true, but rebuilder[{i}] ({rb.name}) has an "
                                  f"http(s) url and no [fetch] bundle is set, so its evidence could never be "
                                  "read: set bundle, or a file:// url")
    for feed in halt.feeds if halt else ():
        if not feed.startswith("file://"):
            raise ConfigError(path, "halt.feeds", f"{feed!r} needs the network, but [fetch] offline is true: "
                              "copy the feed in with the evidence and name it as a file:// URL")


def _check_threshold(r: _Reader, threshold: int, rebuilders: tuple[Rebuilder, ...]) -> None:
    operators = len({rb.identity for rb in rebuilders})
    if threshold > operators:
        raise r.error("threshold", f"is {threshold} but only {operators} independent rebuilder "
                      "operator(s) are configured, so nothing could ever be accepted")


def _check_match(r: _Reader, name: str, match: tuple[str, ...], earlier: list[RepositoryRule]) -> list[str]:
    """Refuse patterns that can never select this rule; return warnings.

    A rule that never matches does not fail, it silently hands its
    repositories to the global rule; so a pattern no repository id can match
    (:func:`rebuildgate.repoid.check_pattern`) is an error, and so is one an
    earlier rule already matches (the first matching rule wins).
    """
    earlier_patterns = [p for rule in earlier for p in rule.match]
    warnings = []
    for finding in repoid.check_patterns(match, earlier_patterns):
        if finding.error:
            raise r.error("match", finding.message())
        warnings.append(f"{r.key('match')} ({name}): {finding.message()}")
    for pattern in match:
        for index, rule in enumerate(earlier):
            hit = next((p for p in rule.match if repoid.covers(p, pattern)), None)
            if hit is not None:
                raise r.error("match", f"pattern {pattern!r} is already matched by repository[{index}] "
                              f"({rule.name})'s pattern {hit!r} and the first matching rule wins, so this rule "
                              f"never applies to it: move this rule above repository[{index}], or narrow {hit!r}")
    return warnings


def parse_policy(data: Mapping[str, Any], path: Path, check_files: bool = True) -> Policy:
    """Validate parsed TOML *data* from *path* into a :class:`Policy` (``check_files``: see :func:`load_policy`)."""
    top = _Reader(path, dict(data), "")
    top.check_files = check_files
    threshold = top.integer("threshold", required=True, minimum=1)
    max_conflicts = top.integer("max_conflicts", 0, minimum=0)
    mode = top.string("mode", "enforce", choices=MODES)
    gate_unlisted = top.get("gate_unlisted", bool, True)
    log_value = top.string("log")

    tables = top.get("rebuilder", list, required=True)
    if not tables:
        raise top.error("rebuilder", "at least one [[rebuilder]] is required")
    rebuilders = tuple(_rebuilder(top, t, i) for i, t in enumerate(tables))
    seen: set[str] = set()
    for i, rb in enumerate(rebuilders):
        if rb.name in seen:
            raise ConfigError(path, f"rebuilder[{i}].name", f"{rb.name!r} is used by two rebuilders")
        seen.add(rb.name)
    _check_threshold(top, threshold, rebuilders)

    repositories: list[RepositoryRule] = []
    warnings: list[str] = []
    for i, t in enumerate(top.get("repository", list, [])):
        r = _Reader(path, t, f"repository[{i}]")
        name = r.string("name", f"#{i}")
        match = r.strings("match", None)
        if not match:
            raise r.error("match", "is required: patterns for the repositories this rule covers")
        warnings += _check_match(r, name, match, repositories)
        gate = r.get("gate", bool, True)
        rb_names = r.strings("rebuilders", None)
        for n in rb_names or ():
            if n not in seen:
                raise r.error("rebuilders", f"names rebuilder {n!r}, which no [[rebuilder]] defines")
        rr = RepositoryRule(
            name=name, match=match, gate=gate,
            threshold=r.integer("threshold", None, minimum=1),
            max_conflicts=r.integer("max_conflicts", None, minimum=0),
            mode=r.string("mode", None, choices=MODES),
            rebuilders=rb_names,
        )
        if gate:
            subset = tuple(rb for rb in rebuilders if rb_names is None or rb.name in rb_names)
            if not subset:
                raise r.error("rebuilders", "a gated repository needs at least one rebuilder")
            _check_threshold(r, rr.threshold if rr.threshold is not None else threshold, subset)
        r.finish()
        repositories.append(rr)

    allow = []
    for i, t in enumerate(top.get("allow", list, [])):
        r = _Reader(path, t, f"allow[{i}]")
        expires = r.get("expires", _dt.date, required=True)
        if isinstance(expires, _dt.datetime):
            expires = expires.date()
        pins = tuple(d.lower() for d in r.strings("sha256"))
        for digest in pins:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise r.error("sha256", f"{digest[:80]!r} is not a sha256 (64 hex digits)")
        allow.append(AllowEntry(
            package=r.string("package", required=True),
            version=r.string("version"),
            expires=expires,
            reason=r.string("reason", required=True),
            sha256=pins,
        ))
        r.finish()

    fetch = FetchSettings()
    if "fetch" in data:
        top.used.add("fetch")
        f = _Reader(path, data["fetch"], "fetch")
        cache_dir = f.string("cache_dir", str(fetch.cache_dir))
        proxy = f.string("proxy")
        if proxy and not proxy.startswith(("http://", "https://")):
            raise f.error("proxy", f"must be an http:// or https:// URL, not {proxy!r}")
        fetch = FetchSettings(
            connect_timeout=f.number("connect_timeout", fetch.connect_timeout),
            read_timeout=f.number("read_timeout", fetch.read_timeout),
            deadline=f.number("deadline", fetch.deadline),
            max_bytes=f.integer("max_bytes", fetch.max_bytes, minimum=1024),
            max_workers=f.integer("max_workers", fetch.max_workers, minimum=1),
            proxy=proxy or None,
            cache_dir=Path(cache_dir) if cache_dir else None,
            cache_ttl=f.integer("cache_ttl", fetch.cache_ttl, minimum=0),
            bundle=_bundle_dir(f),
            offline=f.get("offline", bool, False),
            warm_up=f.get("warm_up", bool, False),
            warm_up_packages=f.integer("warm_up_packages", fetch.warm_up_packages, minimum=1),
            warm_up_seconds=f.number("warm_up_seconds", fetch.warm_up_seconds),
        )
        f.finish()

    if fetch.warm_up and (fetch.cache_dir is None or fetch.cache_ttl == 0 or fetch.offline):
        why = "offline = true" if fetch.offline else "there is no cache (cache_dir or cache_ttl)"
        warnings.append(f"fetch.warm_up is on but {why}: the warm-up after apt-get update fetches nothing")
    halt = _halt(top, data["halt"]) if "halt" in data else None
    top.used.add("halt")
    top.finish()
    _check_bundle(path, fetch, rebuilders, halt)
    policy = Policy(
        path=path, threshold=threshold, max_conflicts=max_conflicts, mode=mode,
        rebuilders=rebuilders, repositories=tuple(repositories), gate_unlisted=gate_unlisted,
        allow=tuple(allow), fetch=fetch, log=Path(log_value) if log_value else None, halt=halt,
        warnings=tuple(warnings),
    )
    return policy
