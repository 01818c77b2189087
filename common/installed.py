"""Installed packages and the exact files they came from, as the front ends find them.

``rebuildgate status`` judges what is installed, not what is about to be.
dpkg and rpm remember a package's name, version and arch, but not the hash
of the file it was installed from, and a rebuilder's word binds that hash.
So each front end's adapter (:mod:`rebuildgate.apt.installed` for dpkg,
:mod:`rebuildgate.dnf.installed` for rpm) locates the file, in this order,
and never guesses:

1. **index**: the installed version's record in the package manager's
   repository metadata (apt's Packages indexes, dnf's cached repository
   metadata) gives its sha256; when several indexes list the version with
   different files, the record is ambiguous and step 2 must settle it;
2. **cache**: a copy in the package manager's download cache (apt's archive
   cache, dnf's package cache) whose own header names exactly this package
   and version is hashed;
3. **unknown**: otherwise the package gets no verdict, only the reason
   (:data:`NOT_IN_ANY_INDEX` in the common case).

This module holds the front-end neutral records and the choice of adapter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

from .errors import PackageError, RebuildgateError
from .model import Artifact
from .proxy import ProxyArg

#: How a package's file was located (``InstalledPackage.located``).
INDEX, CACHE, UNKNOWN = "index", "cache", "unknown"
#: Why a package has no file: the reason the issue names, word for word.
NOT_IN_ANY_INDEX = "version no longer in any index"

DPKG, RPM = "dpkg", "rpm"
PACKAGE_MANAGERS = (DPKG, RPM)
#: rpm databases, inside a root, that make it an rpm system.
RPM_DATABASES = ("var/lib/rpm", "usr/lib/sysimage/rpm")


class InstalledError(RebuildgateError):
    """The installed packages cannot be read (no package database, an
    unreadable cache); ``rebuildgate status`` exits 2 with this line."""


@dataclass(frozen=True)
class InstalledPackage:
    """One installed package, and the file it was installed from if it could be located.

    ``artifact`` is set when ``located`` is :data:`INDEX` or :data:`CACHE`:
    its ``sha256`` is the index's (or the cached copy's) and its ``repo``
    the repository id that lists it (None when no index does).  ``where``
    says where the file was found (the index URI or repo id, the cached
    file), or, with :data:`UNKNOWN`, why it was not.
    """

    name: str
    version: str  # with its epoch, as the package manager writes it
    arch: str
    located: str
    where: str = ""
    artifact: Artifact | None = None

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} ({self.arch})"


@dataclass(frozen=True)
class InstalledSelection:
    """What an adapter read: the package manager, where from, and the packages."""

    package_manager: str
    database: str  # the dpkg status file or rpm database that was read, for the report
    packages: tuple[InstalledPackage, ...]
    proxy: ProxyArg = None  # the package manager's proxy choice: evidence goes the same way (Qubes templates)
    warnings: tuple[str, ...] = ()  # what the package manager said while reading (a repository never cached)


class CachedCopies:
    """A package manager's download cache, listed once on first use: the copies
    of a package it holds, and the first whose own header (control file, rpm
    header) states exactly the installed name, version and arch.

    *listing* gives the cache's package files, *key* what a file's name says
    it is (None: not a package file), *read* reads and hashes one file.
    """

    def __init__(self, listing: Callable[[], Iterable[Path]], key: Callable[[Path], Hashable | None],
                 read: Callable[[Path], Artifact]) -> None:
        self._listing = listing
        self._key = key
        self._read = read
        self._by_key: dict[Hashable, list[Path]] | None = None

    def copies(self, key: Hashable) -> list[Path]:
        if self._by_key is None:
            self._by_key = {}
            try:
                found = sorted(self._listing())
            except OSError:
                found = []
            for path in found:
                named = self._key(path)
                if named is not None and path.is_file():
                    self._by_key.setdefault(named, []).append(path)
        return self._by_key.get(key, [])

    def find(self, keys: Iterable[Hashable], name: str, version: str, arch: str) -> tuple[Path, Artifact] | None:
        """The first copy under any of *keys* that says it is *name* *version* (*arch*), read and hashed."""
        for key in dict.fromkeys(keys):
            for path in self.copies(key):
                try:
                    artifact = self._read(path)
                except PackageError:
                    continue
                if (artifact.name, artifact.version, artifact.arch) == (name, version, arch):
                    return path, artifact
        return None


def pick_package_manager(root: str | None, explicit: str | None = None, rpm_dbpath: str | None = None,
                         environ: "os._Environ[str] | dict[str, str]" = os.environ) -> str:
    """Which package manager's database *root* (default ``/``) holds.

    dpkg when its status file is there (or ``APT_CONFIG`` points apt
    somewhere), rpm when an rpm database is (or ``--dbpath`` was given);
    a root with neither is an :class:`InstalledError`.
    """
    if explicit:
        return explicit
    if rpm_dbpath:
        return RPM
    top = Path(root or "/")
    if (top / "var/lib/dpkg/status").is_file() or (root is None and environ.get("APT_CONFIG")):
        return DPKG
    if any((top / db).is_dir() for db in RPM_DATABASES):
        return RPM
    raise InstalledError(f"no dpkg status file or rpm database under {top}: give --package-manager dpkg|rpm")


def select(packages: Iterable[InstalledPackage], names: Sequence[str]) -> list[InstalledPackage]:
    """The packages named ``name`` or ``name:arch``; all of them without names.

    A name that matches no installed package is an :class:`InstalledError`:
    a report that silently leaves out what was asked for would mislead.
    """
    packages = list(packages)
    if not names:
        return packages
    wanted = set(names)
    chosen = [p for p in packages if p.name in wanted or f"{p.name}:{p.arch}" in wanted]
    found = {p.name for p in chosen} | {f"{p.name}:{p.arch}" for p in chosen}
    missing = [n for n in names if n not in found]
    if missing:
        raise InstalledError(f"not installed: {', '.join(missing)}")
    return chosen


def read_installed(package_manager: str, *, root: str | None = None, config: str | None = None,
                   rpm_dbpath: str | None = None, setopts: Sequence[str] = ()) -> InstalledSelection:
    """Ask the adapter of *package_manager* (imported only now: python-apt or dnf)."""
    if package_manager == DPKG:
        if rpm_dbpath or setopts:
            raise InstalledError("--dbpath and --setopt are dnf/rpm options; dpkg reads apt's configuration "
                                 "(--config, APT_CONFIG, --root)")
        from .apt.installed import installed_debs

        return installed_debs(root=root, config=config)
    from .dnf.installed import installed_rpms

    return installed_rpms(root=root, config=config, dbpath=rpm_dbpath, setopts=setopts)
