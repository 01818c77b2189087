"""dpkg's installed packages and the files they came from, through python-apt.

For ``rebuildgate status`` (:mod:`rebuildgate.installed` says what is
located how).  apt's cache reads dpkg's status file and the Packages
indexes of every sources.list entry, so one :class:`~.records.AptRecords`
answers both "what is installed" and "which index lists this version, with
which sha256".  For each installed version:

* the indexes' records give the sha256 (and the pool file name, the source
  package, the entry's URI: the repository id).  Records that agree name
  the file.  When they disagree (two entries list the same version with
  other bytes), the copy in the archive cache that matches one of them
  decides; with none, the package is unknown, never guessed;
* else a copy in apt's archive cache (``Dir::Cache::archives``) whose
  control file states this name, version and arch is hashed;
* else it is unknown: :data:`~rebuildgate.installed.NOT_IN_ANY_INDEX`.

Only apt's configuration is used: ``APT_CONFIG`` as apt honours it, a
``--config`` file read the same way, and ``--root`` as apt's ``Dir`` (the
root of every other ``Dir::`` path, as with ``apt-get -o Dir=ROOT``).
Nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable

from rebuildgate.installed import (CACHE, DPKG, INDEX, NOT_IN_ANY_INDEX, UNKNOWN, CachedCopies, InstalledError,
                                   InstalledPackage, InstalledSelection)
from rebuildgate.model import Artifact
from rebuildgate.pkginfo import read_deb
from rebuildgate.repoid import apt_repo_id

from .aptconfig import proxy_for
from .origins import GATED, PLAIN, origin_of
from .records import AptRecords, IndexRecord, PackageId, RecordsError, parse_archive_name


def configure_apt(root: str | None, config: str | None) -> None:
    """Set up python-apt's configuration as apt would with ``-o Dir=ROOT`` and ``APT_CONFIG``.

    This must come before anything imports ``apt`` (python-apt's package
    initialises the configuration from the host's files on import, and
    later settings do not move paths derived from it): ``Dir`` is set
    first, so that apt reads ``ROOT/etc/apt/apt.conf.d`` and ``ROOT``'s dpkg
    status, then a ``--config`` file is read, as apt reads ``APT_CONFIG``.
    """
    import apt_pkg

    if root:
        apt_pkg.config.set("Dir", str(Path(root).resolve()))
    if config:
        try:
            apt_pkg.read_config_file(apt_pkg.config, str(config))
        except SystemError as e:
            raise InstalledError(f"apt configuration {config}: {str(e).strip()}") from None
    apt_pkg.init_config()


def installed_debs(root: str | None = None, config: str | None = None) -> InstalledSelection:
    """Every package dpkg has installed, each with the file it came from if it can be located."""
    if config and not os.path.isfile(config):
        raise InstalledError(f"apt configuration {config}: no such file")
    configure_apt(root, config)
    records = AptRecords(lambda: None)
    try:
        installed = records.installed()
    except RecordsError as e:
        raise InstalledError(str(e)) from None
    import apt_pkg

    status = apt_pkg.config.find_file("Dir::State::status")
    archives = archive_cache(Path(apt_pkg.config.find_dir("Dir::Cache::archives")))
    packages = []
    for pkg in sorted(installed, key=lambda p: (p.name, p.arch, p.version)):
        try:
            found = records.index_records(pkg)
        except RecordsError as e:
            raise InstalledError(str(e)) from None
        packages.append(locate(pkg, found, archives))
    return InstalledSelection(DPKG, status, tuple(packages), proxy_for(apt_pkg.config.find, "http"))


def archive_cache(directory: Path) -> CachedCopies:
    """apt's archive cache: ``name_version_arch.deb`` files, with apt's %-quoting in the name."""
    def key(path: Path) -> PackageId | None:
        return parse_archive_name(path.name) if path.name.endswith(".deb") else None

    return CachedCopies(directory.iterdir, key, read_deb)


def _indexed(records: Iterable[IndexRecord]) -> list[IndexRecord]:
    """Records of sources.list entries that give a sha256 (dpkg's status file gives none)."""
    return [r for r in records if r.uri and r.sha256]


def _artifact(pkg: PackageId, record: IndexRecord, source: str) -> Artifact:
    upstream = pkg.version.split(":", 1)[1] if ":" in pkg.version else pkg.version
    return Artifact(filename=record.filename or f"{pkg.name}_{upstream}_{pkg.arch}.deb", sha256=str(record.sha256),
                    name=pkg.name, source=source, version=pkg.version, arch=pkg.arch)


def locate(pkg: PackageId, records: list[IndexRecord], archives: CachedCopies) -> InstalledPackage:
    """Where the installed *pkg* came from: its index record, a cached copy, or nowhere known."""
    listed = _indexed(records)
    source = next((r.source for r in records if r.source), pkg.name)
    digests = sorted({r.sha256 for r in listed if r.sha256})
    if len(digests) == 1:
        origin = origin_of(listed, digests[0])
        record = next(r for r in listed if r.uri == origin.uri and r.sha256 == digests[0])
        artifact = dataclasses.replace(_artifact(pkg, record, record.source or source),
                                       repo=apt_repo_id(origin.uri) if origin.uri else None)
        return InstalledPackage(pkg.name, pkg.version, pkg.arch, INDEX, origin.uri or "", artifact)
    copy = archives.find([pkg], pkg.name, pkg.version, pkg.arch)
    if copy is not None:
        path, cached = copy
        origin = origin_of(listed, cached.sha256)
        repo = apt_repo_id(origin.uri) if origin.kind in (GATED, PLAIN) and origin.uri else None
        if digests and repo is None:  # the indexes list this version, but with neither of their files
            return InstalledPackage(pkg.name, pkg.version, pkg.arch, UNKNOWN,
                                    f"indexes list {len(digests)} different files for this version and the "
                                    f"cached {path} is none of them")
        return InstalledPackage(pkg.name, pkg.version, pkg.arch, CACHE, str(path),
                                dataclasses.replace(cached, repo=repo, source=cached.source or source))
    if digests:
        return InstalledPackage(pkg.name, pkg.version, pkg.arch, UNKNOWN,
                                f"indexes list {len(digests)} different files for this version and none is "
                                "in apt's archive cache")
    return InstalledPackage(pkg.name, pkg.version, pkg.arch, UNKNOWN, NOT_IN_ANY_INDEX)
