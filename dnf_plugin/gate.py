"""What the dnf plugin does with a transaction, in terms of the library.

:mod:`rebuildgate.dnf.plugin` is the file dnf loads; it only finds the
library and turns every failure into ``dnf.exceptions.Error``.  This module
is imported by it *inside* the hooks, once the library is importable, and
does the translation both ways:

* dnf package objects (hawkey packages, duck-typed here so the benchmark and
  the unit tests can pass plain objects) become
  :class:`~rebuildgate.model.Artifact` records;
* the library's :class:`~rebuildgate.decide.Verdict` records become the
  table dnf prints after ``Error:``, or warnings.

It holds no trust rule of its own.  Which repositories are gated, how many
votes are needed, audit mode and the allowlist all come from the policy
through the core; the only judgement made here is which of dnf's package
checksums can name the file at all (``PRE_DOWNLOAD_TYPES`` and its neighbours).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from rebuildgate.decide import Verdict
from rebuildgate.errors import PackageError
from rebuildgate.model import Artifact, Problem
from rebuildgate.pkginfo import file_digests, read_rpm, sourcerpm_name
from rebuildgate.policy import Policy, load_policy
from rebuildgate.proxy import ProxyArg, ProxyChoice
from rebuildgate.repoid import dnf_repo_id
from rebuildgate.table import NO_HASH, format_blocked
from rebuildgate.verify import DEFAULT_LOG, Verifier

#: dnf's logger; the plugin's own child logger propagates to its handlers.
log = logging.getLogger("dnf.plugin.rebuildgate")

#: Checksum types a repository may give that bind the file before download.
#: An Artifact always carries a sha256, so that is the one type usable then.
PRE_DOWNLOAD_TYPES = ("sha256",)
#: Strong types the core cannot take without a sha256: such packages are
#: verified after download, by hashing the file (in ``pre_transaction``).
AFTER_DOWNLOAD_TYPES = ("sha384", "sha512")
#: Types too weak to name a file: a gated package with only these is refused.
WEAK_TYPES = ("md5", "sha1", "sha224")

#: Oldest in-toto and securesystemslib the library works with (pyproject).
MIN_VERSIONS = {"securesystemslib": 1, "cryptography": 40}


#: Stands in for a hash where no hash is compared (rebuildgate.table.NO_HASH).
_NO_HASH = NO_HASH


class Blocked(Exception):
    """The transaction must not go on; the message is what dnf prints.

    Unlike the library's errors this message may span lines: it is the
    table of blocked packages the issue asks for.
    """


class LibraryError(Exception):
    """The library was imported, but from an unusable environment."""


def check_environment() -> None:
    """Refuse to run on the securesystemslib / cryptography that dnf's Python sees first.

    ``/usr/bin/dnf`` runs the system Python, whose dist-packages may hold
    Debian's securesystemslib 0.26 and cryptography 38 (FIELD-NOTES, "A trap
    in the venv"; in-toto itself is never imported by rebuildgate).  The plugin puts ``library_path`` first on ``sys.path``; this
    check makes a remaining mix-up a clear error instead of odd verdicts.
    """
    import importlib

    for module, minimum in MIN_VERSIONS.items():
        mod = importlib.import_module(module)
        version = str(getattr(mod, "__version__", "0"))
        try:
            major = int(version.split(".", 1)[0])
        except ValueError:
            major = 0
        if major < minimum:
            raise LibraryError(
                f"rebuildgate needs {module.replace('_', '-')}>={minimum}, but Python imported "
                f"{version} from {getattr(mod, '__file__', '?')}; set library_path in "
                "rebuildgate.conf to the site-packages that holds rebuildgate and its dependencies "
                "(the packages bundle them in /usr/lib/rebuildgate/lib)")


@dataclass(frozen=True)
class PackageFacts:
    """What dnf knows about one package to be installed, as plain data.

    Reading everything once from the hawkey object keeps the hawkey API in
    one place (:func:`package_facts`) and lets tests build facts by hand.
    """

    nevra: str
    name: str
    epoch: int
    version: str
    release: str
    arch: str
    sourcerpm: str | None
    reponame: str
    checksum_type: str | None  # lower-case name: "sha256", "sha1", ...; None = none
    checksum: str | None  # hex

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the package across hooks (the hawkey objects may differ)."""
        return (self.nevra, self.reponame)

    @property
    def full_version(self) -> str:
        """``epoch:version-release``, the epoch only when nonzero (rpm's convention)."""
        vr = f"{self.version}-{self.release}"
        return f"{self.epoch}:{vr}" if self.epoch else vr

    @property
    def filename(self) -> str:
        """The file name rpmbuild gives the package, as rebuilders list it: no epoch."""
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    def artifact(self, sha256: str, sha512: str | None = None) -> Artifact:
        return Artifact(
            filename=self.filename,
            sha256=sha256.lower(),
            name=self.name,
            source=sourcerpm_name(self.sourcerpm or "") or None,
            version=self.full_version,
            arch=self.arch,
            repo=dnf_repo_id(self.reponame),
            sha512=sha512.lower() if sha512 else None,
        )


def _checksum_name(kind: Any) -> str:
    """hawkey's checksum type constant -> lower-case name ("sha256")."""
    if isinstance(kind, str):
        return kind.lower()
    import hawkey

    return str(hawkey.chksum_name(kind)).lower()


def package_facts(pkg: Any) -> PackageFacts:
    """Read a dnf/hawkey package (or anything with the same attributes)."""
    chksum = pkg.chksum  # (hawkey type, raw bytes), or None for @commandline
    ctype = cval = None
    if chksum:
        kind, raw = chksum
        ctype = _checksum_name(kind)
        cval = raw.hex() if isinstance(raw, (bytes, bytearray)) else str(raw).lower()
    return PackageFacts(
        nevra=str(pkg),
        name=str(pkg.name),
        epoch=int(pkg.epoch or 0),
        version=str(pkg.version),
        release=str(pkg.release),
        arch=str(pkg.arch),
        sourcerpm=str(pkg.sourcerpm) if pkg.sourcerpm else None,
        reponame=str(pkg.reponame),
        checksum_type=ctype,
        checksum=cval,
    )


def dnf_proxy(conf: Any) -> str | None:
    """The proxy URL dnf itself uses (``proxy=``, ``proxy_username``/``password``).

    Evidence must travel the same way as packages: in a Qubes template the
    updates proxy is the only way out (FIELD-NOTES).
    """
    proxy = str(getattr(conf, "proxy", "") or "").strip()
    if not proxy or proxy.lower() == "_none_":
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy  # dnf/libcurl's default scheme
    user = str(getattr(conf, "proxy_username", "") or "")
    password = str(getattr(conf, "proxy_password", "") or "")
    parts = urlsplit(proxy)
    if user and "@" not in parts.netloc:
        userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        parts = parts._replace(netloc=f"{userinfo}@{parts.netloc}")
    return urlunsplit(parts)


def dnf_proxy_choice(conf: Any) -> ProxyChoice:
    """The way dnf's own downloads take, for the evidence: ``proxy=`` except for the
    hosts ``$no_proxy`` lists (libcurl's rule), else the environment."""
    proxy = dnf_proxy(conf)
    return ProxyChoice.libcurl(proxy) if proxy else ProxyChoice.environment()


@dataclass(frozen=True)
class Checked:
    """What ``resolved()`` settled for one package, re-used by ``pre_transaction()``.

    ``sha256`` is the hash that was verified before download, or None when
    the repository gave no usable checksum (the file is verified once it is
    on disk).
    """

    facts: PackageFacts
    verdict: Verdict | None
    sha256: str | None


@dataclass
class Gate:
    """The plugin's state across the hooks of one dnf run.

    ``resolved()`` verifies everything it can from repository metadata in
    one batch, before any download.  ``pre_transaction()`` hashes the files
    dnf is about to hand to rpm: a file must be the one that was verified
    (else it is verified again under its real hash), and packages that had
    no usable repository checksum are verified now.
    """

    policy: Policy
    proxy: ProxyArg = None
    clock: Callable[[], float] = time.monotonic
    checked: dict[tuple[str, str], Checked] = field(default_factory=dict)
    last_duration: float = 0.0

    @classmethod
    def load(cls, policy_path: str | None, proxy: ProxyArg) -> "Gate":
        """Load the policy (ConfigError on a bad one) and route library warnings to dnf."""
        _forward_library_log()
        return cls(load_policy(policy_path or None), proxy)

    # -- the hooks -------------------------------------------------------

    def resolved(self, packages: Iterable[Any]) -> list[Verdict]:
        """Verify the install set of a resolved transaction; raise Blocked if any fails."""
        facts = [package_facts(p) for p in packages]
        if not facts:
            return []
        started = self.clock()
        ready: list[PackageFacts] = []
        weak: list[PackageFacts] = []
        for f in facts:
            if f.checksum and f.checksum_type in PRE_DOWNLOAD_TYPES:
                ready.append(f)
            elif f.checksum and f.checksum_type not in AFTER_DOWNLOAD_TYPES:
                weak.append(f)  # md5, sha1, sha224 or unknown: cannot name the file
            else:
                self.checked[f.key] = Checked(f, None, None)  # @commandline, sha512: after download
        verdicts: list[Verdict] = []
        if ready or weak:
            with Verifier(self.policy, self.proxy) as verifier:
                verdicts = verifier.verify_many([f.artifact(f.checksum or "") for f in ready])
                verdicts += [self._refuse_weak(verifier, f) for f in weak]
        for f, v in zip(ready, verdicts):
            self.checked[f.key] = Checked(f, v, v.artifact.sha256)
        for f, v in zip(weak, verdicts[len(ready):]):
            self.checked[f.key] = Checked(f, v, None)
        self.last_duration = self.clock() - started
        log.debug("rebuildgate: verified %d package(s) in %.3fs", len(verdicts), self.last_duration)
        self._judge(verdicts, "before download", "Nothing was downloaded or installed.")
        return verdicts

    def pre_transaction(self, packages: Iterable[Any]) -> list[Verdict]:
        """Check the files rpm is about to install; raise Blocked if any fails.

        Every file is hashed and its header read, from gated repositories and
        ungated ones alike (an ungated repository does not lift a halt): the
        verdict from before the download stands only for the very file that
        was verified *and* only if the file is the package the repository
        metadata said (name, epoch, version, source: halts and the allowlist
        were judged on those).  Anything else is verified again as the file
        says it is (for an ungated repository that asks no rebuilder: it
        judges the halts).
        """
        todo: list[Artifact] = []
        unreadable: list[tuple[Artifact, str]] = []
        notes: dict[tuple[str, str | None], str] = {}
        for pkg in packages:
            f = package_facts(pkg)
            checked = self.checked.get(f.key)
            verified = checked.sha256 if checked else None
            path = Path(pkg.localPkg())
            try:
                sha256, _ = file_digests(path, with_sha512=False)
                file = read_rpm(path, f.reponame, (sha256, None))
            except PackageError as e:
                unreadable.append((f.artifact(_NO_HASH), str(e)))
                continue
            claimed = f.artifact(sha256)
            artifact = claimed.with_file_identity(file)
            if verified and sha256 == verified and artifact is claimed:
                continue  # the file is the one that was verified, and the package it was said to be
            if verified and sha256 != verified:
                notes[(f.filename, f.reponame)] = (
                    f"{path} has sha256 {sha256[:16]}..., not the {verified[:16]}... "
                    "verified before download")
            _, sha512 = file_digests(path)
            todo.append(replace(artifact, sha512=sha512))
        if not todo and not unreadable:
            return []
        with Verifier(self.policy, self.proxy) as verifier:
            verdicts = verifier.verify_many(todo)
            verdicts += [verifier.refuse(a, Problem("unreadable", why)) for a, why in unreadable]
        self._judge(verdicts, "before installing", "Nothing was installed.", notes)
        return verdicts

    # -- helpers ---------------------------------------------------------

    def _refuse_weak(self, verifier: Verifier, f: PackageFacts) -> Verdict:
        """A verdict for a package whose repository checksum cannot bind the file.

        The core decides what that means (ungated repository: fine; audit
        mode or allowlist: let through and logged; else blocked), exactly as
        for a package without votes.
        """
        artifact = f.artifact(_NO_HASH)  # never compared: no evidence is fetched
        if f.checksum_type in WEAK_TYPES:
            why = f"repository metadata gives only a {f.checksum_type} checksum, weaker than sha256"
        else:
            why = f"repository metadata gives only a {f.checksum_type} checksum, a type rebuildgate cannot use"
        return verifier.refuse(artifact, Problem("weak-checksum", f"{why}; it cannot name the file"))

    def _judge(self, verdicts: Sequence[Verdict], when: str, footer: str,
               notes: dict[tuple[str, str | None], str] | None = None) -> None:
        blocked = [v for v in verdicts if not v.allowed]
        relaxed = [v for v in verdicts if v.allowed and v.relaxed_by and not v.accepted]
        overridden = [v for v in verdicts if v.allowed and v.relaxed_by and v.accepted]
        if overridden:
            why = ", ".join(sorted({v.relaxed_by or "?" for v in overridden}))
            log.warning("rebuildgate: %d package(s) let through past a halt by the admin's override (%s); "
                        "decision log: %s", len(overridden), why, self.log_path)
        unlogged = [v for v in verdicts if v.unlogged]
        if unlogged:
            log.warning("rebuildgate: %d of %d decision log line(s) were not written: %s", len(unlogged),
                        len(verdicts), unlogged[0].unlogged)
        if relaxed:
            log.warning("rebuildgate: %d package(s) do not meet the policy but are let through "
                        "(%s); decision log: %s", len(relaxed),
                        ", ".join(sorted({v.relaxed_by or "?" for v in relaxed})), self.log_path)
        if blocked:
            raise Blocked(format_blocked(blocked, len(verdicts), when, footer, self.policy, notes or {}))

    @property
    def log_path(self) -> Path:
        return self.policy.log or DEFAULT_LOG



class _ToDnf(logging.Handler):
    """Hands the library's log records (audit-mode warnings) to dnf's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log.handle(record)
        except Exception:  # noqa: BLE001 - logging must never break the gate
            self.handleError(record)


def _forward_library_log() -> None:
    """Show the core's warnings where dnf shows its own, once (not via Python's last resort)."""
    lib = logging.getLogger("rebuildgate")
    if not any(isinstance(h, _ToDnf) for h in lib.handlers):
        lib.addHandler(_ToDnf())
        lib.propagate = False


def collect_transaction(policy_path: str | None, proxy: ProxyArg, packages: Iterable[Any],
                        bundle_dir: str | None) -> Any:
    """Collect mode: write the evidence bundle of *packages* (a Qubes UpdateVM's
    ``dnf --downloadonly``) into *bundle_dir*, else the policy's ``[fetch] bundle``.

    Every package is collected under the sha256 its repository gives (a
    ``template`` rebuilder whose paths need ``{sha256}`` cannot be collected
    without one); nothing is verified and the policy's key files need not
    exist here.  Returns the :class:`rebuildgate.collect.CollectReport`.
    """
    from rebuildgate.collect import collect

    _forward_library_log()
    policy = load_policy(policy_path or None, check_files=False)
    target = Path(bundle_dir) if bundle_dir else policy.fetch.bundle
    if target is None:
        raise LibraryError("collect mode needs bundle_dir in rebuildgate.conf or [fetch] bundle in the policy")
    artifacts = []
    for f in (package_facts(p) for p in packages):
        sha256 = f.checksum if f.checksum and f.checksum_type == "sha256" else ""
        artifacts.append(f.artifact(sha256))
    return collect(policy, artifacts, target, proxy)
