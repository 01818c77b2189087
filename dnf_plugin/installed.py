"""rpm's installed packages and the files they came from, through dnf's sack.

For ``rebuildgate status`` (:mod:`rebuildgate.installed` says what is
located how).  One dnf sack holds the rpm database (``@System``) and every
enabled repository's metadata, read from dnf's cache only (``cacheonly``:
nothing is downloaded, nothing is written; run ``dnf makecache`` to refresh
it).  For each installed package:

* the repositories' records of the same name, epoch, version, release and
  arch give its sha256 (dnf's ``pkg.chksum``) and its repository id;
  records that disagree are settled by a cached copy, as for apt;
  a repository that gives only another checksum type (sha512, sha1) cannot
  name the file by sha256, which every verdict needs, so then the cache
  must;
* else a copy in dnf's package cache (``<cachedir>/<repo>-<hash>/packages/``,
  kept with ``keepcache=1``) whose rpm header states this package is hashed;
* else it is unknown: :data:`~rebuildgate.installed.NOT_IN_ANY_INDEX`
  (``dnf install ./x.rpm`` leaves no record anywhere).

dnf's configuration is read as dnf reads it: ``--config`` (dnf's ``-c``),
else ``ROOT/etc/dnf/dnf.conf`` or ``/etc/dnf/dnf.conf``; ``--root`` is dnf's
``--installroot`` (repositories from inside it when it has them, cachedir
and persistdir under it); ``--setopt`` main options are applied last, as
dnf applies them; ``--dbpath`` is rpm's database path inside the root
(Debian's rpm defaults to ``~/.rpmdb``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from rebuildgate.errors import one_line
from rebuildgate.installed import (CACHE, INDEX, NOT_IN_ANY_INDEX, RPM, UNKNOWN, CachedCopies, InstalledError,
                                   InstalledPackage, InstalledSelection)
from rebuildgate.model import Artifact
from rebuildgate.pkginfo import read_rpm, sourcerpm_name

from .gate import PackageFacts, dnf_proxy_choice, package_facts


@dataclass(frozen=True)
class RepoRecord:
    """One repository's record of an installed package's exact NEVRA."""

    facts: PackageFacts
    location: str  # the file's path in the repository (``Packages/h/hello-1.0-1.noarch.rpm``)


def installed_rpms(root: str | None = None, config: str | None = None, dbpath: str | None = None,
                   setopts: Sequence[str] = ()) -> InstalledSelection:
    """Every package in the rpm database, each with the file it came from if it can be located."""
    try:
        import dnf
        import rpm
    except ImportError as e:
        raise InstalledError(f"cannot read the rpm database: dnf's Python module is not importable ({e})") from None
    base = dnf.Base()
    try:
        _configure(base, root, config, dbpath, setopts)
        with DnfMessages() as messages:
            try:
                base.read_all_repos()
                for repo in base.repos.iter_enabled():
                    repo.skip_if_unavailable = True  # a repository never cached has no records: not an error
                base.fill_sack(load_system_repo=True, load_available_repos=True)
            except (dnf.exceptions.Error, RuntimeError) as e:
                raise InstalledError(f"cannot read dnf's repositories or the rpm database: {one_line(str(e))}") \
                    from None
        database = os.path.join(base.conf.installroot, rpm.expandMacro("%_dbpath").lstrip("/"))
        query = base.sack.query()
        installed = list(query.installed())
        records = _records(query.available().filter(name=sorted({str(p.name) for p in installed})))
        cache = package_cache(Path(base.conf.cachedir))
        proxy = dnf_proxy_choice(base.conf)
        packages = [locate(package_facts(p), _from_repo(p), records.get(_nevra(p), []), cache) for p in installed]
    finally:
        base.close()
    packages.sort(key=lambda p: (p.name, p.arch, p.version))
    return InstalledSelection(RPM, database, tuple(packages), proxy, tuple(messages.lines))


class DnfMessages(logging.Handler):
    """dnf's own warnings while the sack is filled (``Cache-only enabled but no
    cache for 'x'``), kept for the report instead of printed in the middle of it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self._logger = logging.getLogger("dnf")
        self._propagate = True

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"dnf: {one_line(record.getMessage())}")

    def __enter__(self) -> "DnfMessages":
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate


def _configure(base: Any, root: str | None, config: str | None, dbpath: str | None, setopts: Sequence[str]) -> None:
    import dnf
    import rpm

    conf = base.conf
    if root:
        conf.installroot = str(Path(root).resolve())
    top = conf.installroot
    if config:
        if not os.path.isfile(config):
            raise InstalledError(f"dnf configuration {config}: no such file")
        conf.config_file_path = str(config)
    elif root and os.path.isfile(os.path.join(top, "etc/dnf/dnf.conf")):
        conf.config_file_path = os.path.join(top, "etc/dnf/dnf.conf")
    options = []
    for item in setopts:
        key, equals, value = item.partition("=")
        if not equals or not key or "." in key:
            raise InstalledError(f"--setopt {item!r}: give a dnf main option as KEY=VALUE")
        options.append((key, value))
    try:
        if os.path.isfile(conf.config_file_path):
            conf.read(priority=dnf.conf.PRIO_MAINCONFIG)
        conf.substitutions.update_from_etc(top)
        releasever = dict(options).get("releasever") or dnf.rpm.detect_releasever(top)
        if releasever:
            conf.releasever = releasever
        elif conf.substitutions.get("releasever") is None:
            del conf.substitutions["releasever"]  # unknown: $releasever stays as written (libdnf refuses None)
        if root:
            inside = [os.path.join(top, d.lstrip("/")) for d in conf.reposdir]
            if any(os.path.exists(d) for d in inside):
                conf.reposdir = inside
            for option in ("cachedir", "persistdir"):
                conf.prepend_installroot(option)
        for key, value in options:
            if key != "releasever":
                conf.set_or_append_opt_value(key, value, dnf.conf.PRIO_COMMANDLINE)
    except dnf.exceptions.Error as e:
        raise InstalledError(f"dnf configuration: {one_line(str(e))}") from None
    conf.cacheonly = True  # read what dnf has cached; never download metadata
    if dbpath:
        rpm.addMacro("_dbpath", dbpath)  # after dnf.Base(): it reloads rpm's macros


def _nevra(pkg: Any) -> tuple[str, int, str, str, str]:
    return (str(pkg.name), int(pkg.epoch or 0), str(pkg.version), str(pkg.release), str(pkg.arch))


def _from_repo(pkg: Any) -> str:
    """The repository dnf's history says the package was installed from ("" if none)."""
    try:
        return str(pkg.from_repo or "")
    except Exception:  # noqa: BLE001 - no history database: no preference
        return ""


def _records(available: Iterable[Any]) -> dict[tuple[str, int, str, str, str], list[RepoRecord]]:
    out: dict[tuple[str, int, str, str, str], list[RepoRecord]] = {}
    for pkg in available:
        out.setdefault(_nevra(pkg), []).append(RepoRecord(package_facts(pkg), str(pkg.location or "")))
    return out


def package_cache(cachedir: Path) -> CachedCopies:
    """dnf's package cache: ``<cachedir>/<repo>-<hash>/packages/<file>.rpm``, by file name."""
    return CachedCopies(lambda: cachedir.glob("*/packages/*.rpm"), lambda path: path.name, read_rpm)


def locate(installed: PackageFacts, from_repo: str, records: list[RepoRecord],
           cache: CachedCopies) -> InstalledPackage:
    """Where the installed package came from: a repository record, a cached copy, or nowhere known."""
    def result(located: str, where: str, artifact: Artifact | None = None) -> InstalledPackage:
        return InstalledPackage(installed.name, installed.full_version, installed.arch, located, where, artifact)

    by_sha256 = [r for r in records if r.facts.checksum_type == "sha256" and r.facts.checksum]
    digests = sorted({r.facts.checksum or "" for r in by_sha256})
    source = sourcerpm_name(installed.sourcerpm or "") or installed.name
    if len(digests) == 1:
        chosen = next((r for r in by_sha256 if r.facts.reponame == from_repo), by_sha256[0])
        artifact = chosen.facts.artifact(digests[0])
        return result(INDEX, chosen.facts.reponame, replace(artifact, source=artifact.source or source))
    names = [installed.filename, *(os.path.basename(r.location) for r in records if r.location)]
    copy = cache.find(names, installed.name, installed.full_version, installed.arch)
    if copy is not None:
        path, cached = copy
        listing = [r for r in records if _lists(r, path, cached)]
        if digests and not listing:
            return result(UNKNOWN, f"repositories list {len(digests)} different files for this version and the "
                                   f"cached {path} is none of them")
        repo = next((r.facts.reponame for r in listing if r.facts.reponame == from_repo),
                    listing[0].facts.reponame if listing else None)
        return result(CACHE, str(path), replace(cached, source=cached.source or source, repo=repo))
    if len(digests) > 1:
        return result(UNKNOWN, f"repositories list {len(digests)} different files for this version and none is "
                               "in dnf's package cache")
    if records:
        kinds = sorted({r.facts.checksum_type or "no checksum" for r in records})
        return result(UNKNOWN, f"{', '.join(sorted({r.facts.reponame for r in records}))} gives only "
                               f"{', '.join(kinds)} for it (no sha256) and no copy is in dnf's package cache")
    return result(UNKNOWN, NOT_IN_ANY_INDEX)


#: Checksum types that can say a repository lists exactly the cached file
#: (a weak one could be made to match another file, and so move a package
#: under another repository's rule).
ATTRIBUTING_TYPES = ("sha256", "sha384", "sha512")


def _lists(record: RepoRecord, path: Path, cached: Artifact) -> bool:
    """Does *record* list exactly the cached file (by a strong checksum of its own type)?"""
    kind, value = record.facts.checksum_type, (record.facts.checksum or "").lower()
    if kind not in ATTRIBUTING_TYPES or not value:
        return False
    known = {"sha256": cached.sha256, "sha512": cached.sha512}.get(kind)
    if known is None:
        digest = hashlib.new(kind)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        known = digest.hexdigest()
    return known == value
