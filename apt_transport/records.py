"""Which package a download is: name, version, arch and *source* name.

Rebuilders publish by source package (FIELD-NOTES), and the binary name
often differs (``libfoo1`` from ``foo``).  apt knows the source name from
its Packages index; the method asks apt's own package records for it
(python-apt, with the configuration apt sent, so a private test config is
honoured) and matches the record by the sha256 apt expects, so the record
found is the one for exactly this file.  Without a record the binary name
is the best guess (it usually fails closed: no evidence at that URL).

Names in the download request (``hello_2%3a1.0-1_all.deb``, apt's quoting
of ``:`` and ``_``) give name, version with epoch, and arch.

The pre-install hook asks the same records a second question: which
sources.list entries list this version, and with which sha256
(:meth:`AptRecords.index_records`).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit

from rebuildgate.model import Artifact
from rebuildgate.repoid import apt_repo_id, apt_repo_id_from_file_uri

from . import protocol

PACKAGE_SUFFIXES = (".deb", ".udeb", ".ddeb")


@dataclass(frozen=True)
class PackageId:
    """What apt's file names say about a package (not yet trusted for anything)."""

    name: str
    version: str
    arch: str


def parse_archive_name(basename: str) -> PackageId | None:
    """``name_version_arch.ext`` with apt's %-quoting of each part, else None."""
    stem, dot, _ext = basename.rpartition(".")
    if not dot:
        return None
    parts = stem.split("_")
    if len(parts) != 3 or not all(parts):
        return None
    name, version, arch = (protocol.dequote(unquote(p)) for p in parts)
    return PackageId(name, version, arch)


def uri_basename(uri: str) -> str:
    """The file name a URI ends in, %-escapes decoded (the pool name)."""
    return unquote(posixpath.basename(urlsplit(uri).path))


def is_package(uri: str, filename: str, archives_dir: str) -> bool:
    """Is this download a package that dpkg may install?

    Everything apt fetches into its archives directory is (whatever the
    file's extension), and so is anything named like a package, wherever it
    is saved (``apt-get download``).  Index files are neither.
    """
    if archives_dir and filename.startswith(archives_dir.rstrip("/") + "/"):
        return True
    names = (uri_basename(uri).lower(), posixpath.basename(filename).lower())
    return any(n.endswith(PACKAGE_SUFFIXES) for n in names)


@dataclass(frozen=True)
class IndexRecord:
    """One index's record of a package version: what apt believes about the file.

    ``uri`` is the base URI of the sources.list entry whose index holds the
    record (``rebuildgate+http://host/debian/``), None when apt cannot say
    which entry that is.
    """

    source: str
    arch: str
    sha256: str | None
    uri: str | None = None
    filename: str | None = None  # the pool file name (``Filename:`` without its directory)


class AptRecords:
    """apt's package records, opened on first use; not thread-safe (one caller thread)."""

    def __init__(self, apply_config) -> None:
        self._apply_config = apply_config
        self._cache = None
        self._records = None
        self._sources = None
        self.error: str | None = None

    def _open(self) -> bool:
        if self._cache is not None:
            return True
        if self.error is not None:
            return False
        try:
            import apt_pkg

            self._apply_config()
            apt_pkg.init_system()
            # None: silent (stdout is the protocol); apt.progress.base.OpProgress is
            # as silent but imports python-apt's whole apt package (~15 ms per start)
            self._cache = apt_pkg.Cache(None)
            self._records = apt_pkg.PackageRecords(self._cache)
            return True
        except Exception as e:  # noqa: BLE001 - any failure: fall back to names
            self.error = protocol.field_value(f"cannot read apt's package cache: {e}", 300)
            return False

    def _open_or_raise(self) -> None:
        """Open apt's cache, or raise :class:`RecordsError`: for callers that
        cannot treat an unreadable cache as "no record"."""
        if not self._open():
            raise RecordsError(self.error or "cannot read apt's package cache")

    def lookup(self, pkg: PackageId, sha256: str | None) -> tuple[str, str] | None:
        """(source name, arch) from the record of this exact file, or None."""
        if not self._open():
            return None
        try:
            return self._lookup(pkg, sha256)
        except Exception:  # noqa: BLE001 - a record we cannot read is no record
            return None

    def _lookup(self, pkg: PackageId, sha256: str | None) -> tuple[str, str] | None:
        best: tuple[str, str] | None = None
        for record in self._each_record(pkg, with_uri=False):
            found = (record.source, record.arch)
            if sha256 is None:
                best = best or found
            elif record.sha256 == sha256.lower():
                return found
        return best

    def index_records(self, pkg: PackageId) -> list[IndexRecord]:
        """Every record apt's indexes hold for this name, version and arch.

        Raises :class:`RecordsError` when apt's cache cannot be read: a caller
        that must know where a file came from cannot treat that as "nowhere".
        """
        self._open_or_raise()
        return list(self._each_record(pkg, with_uri=True))

    def version_records(self, name: str, arch: str, version: str, version_id: int) -> list[IndexRecord] | None:
        """Every index record of the version apt's hook named by *version_id*, or None.

        apt's JSON hooks name a version by its id in apt's cache; the hook
        opens the same cache (``APT_CONFIG`` is inherited), so the ids agree
        unless the cache changed in between.  None when no version of that
        name, arch and version string has that id: the caller cannot tell
        which file apt will fetch and must not judge it.  Raises
        :class:`RecordsError` when apt's cache cannot be read.
        """
        self._open_or_raise()
        for key in (f"{name}:{arch}", name):
            try:
                package = self._cache[key]
            except KeyError:
                continue
            for ver in package.version_list:
                if ver.ver_str == version and ver.id == version_id:
                    return list(self._version_records(package, ver, with_uri=True))
        return None

    def upgrades(self) -> list[tuple[PackageId, list[IndexRecord]]]:
        """The candidate version of every installed package apt could upgrade, with
        its index records.  Raises :class:`RecordsError` when the cache cannot be read."""
        import apt_pkg

        self._open_or_raise()
        depcache = apt_pkg.DepCache(self._cache)
        out = []
        for package in self._cache.packages:
            current = package.current_ver
            if current is None or not depcache.is_upgradable(package):
                continue
            candidate = depcache.get_candidate_ver(package)
            if candidate is None or candidate.id == current.id:
                continue
            out.append((PackageId(package.name, candidate.ver_str, candidate.arch),
                        list(self._version_records(package, candidate, with_uri=True))))
        return out

    def installed(self) -> list[PackageId]:
        """Every package dpkg has installed (its current version), as apt's cache reads
        dpkg's status file.  Raises :class:`RecordsError` when the cache cannot be read."""
        self._open_or_raise()
        return [PackageId(package.name, package.current_ver.ver_str, package.current_ver.arch)
                for package in self._cache.packages if package.current_ver is not None]

    def _each_record(self, pkg: PackageId, with_uri: bool) -> Iterator[IndexRecord]:
        cache = self._cache
        candidates = []
        for key in (f"{pkg.name}:{pkg.arch}", pkg.name):
            try:
                candidates.append(cache[key])
            except KeyError:
                continue
        for package in candidates:
            for version in package.version_list:
                if version.ver_str == pkg.version:
                    yield from self._version_records(package, version, with_uri)

    def _version_records(self, package, version, with_uri: bool) -> Iterator[IndexRecord]:  # noqa: ANN001 - apt_pkg
        records = self._records
        for pkgfile, index in version.file_list:
            if not records.lookup((pkgfile, index)):
                continue
            try:
                digest = records.hashes.find("SHA256")
            except KeyError:  # no SHA256: dpkg's status file, an md5-only index
                digest = None
            yield IndexRecord(records.source_pkg or package.name, version.arch,
                              str(digest.hashvalue).lower() if digest else None,
                              self._index_uri(pkgfile) if with_uri else None,
                              posixpath.basename(records.filename) or None)

    def _index_uri(self, pkgfile) -> str | None:  # noqa: ANN001 - apt_pkg.PackageFile
        """The base URI of the sources.list entry behind *pkgfile*, as apt-cache policy shows it.

        None for dpkg's status file (it says what is installed, not where from).
        """
        import apt_pkg

        if pkgfile.not_source:
            return None
        if self._sources is None:
            self._sources = apt_pkg.SourceList()
            self._sources.read_main_list()
        index = self._sources.find_index(pkgfile)
        return index.archive_uri("") if index is not None else None


class RecordsError(Exception):
    """apt's package records cannot be read (one line)."""


def record_artifact(name: str, version: str, record: IndexRecord) -> Artifact:
    """The Artifact apt will fetch for version *version* of *name* as *record*
    (an index record with a sha256 and the entry's URI), before any download:
    the pre-prompt hook and the warm-up judge and fetch by this."""
    assert record.sha256 and record.uri
    upstream = version.split(":", 1)[-1]
    return Artifact(filename=record.filename or f"{name}_{upstream}_{record.arch}.deb", sha256=record.sha256,
                    name=name, source=record.source, version=version, arch=record.arch,
                    repo=apt_repo_id(record.uri))


def make_artifact(uri: str, filename: str, repo_uri: str | None, sha256: str, sha512: str | None,
                  records: AptRecords | None) -> Artifact:
    """The Artifact for one package download, as the core wants it.

    ``filename`` is the pool name (no epoch), the name rebuilders list in
    their products; ``version`` keeps the epoch; ``repo`` is the repository
    id (:mod:`rebuildgate.repoid`) of *repo_uri*, apt's ``Target-Repo-URI``.
    """
    pool_name = uri_basename(uri)
    pkg = parse_archive_name(posixpath.basename(filename)) or parse_archive_name(pool_name)
    name = version = arch = source = None
    if pkg is not None:
        name, version, arch = pkg.name, pkg.version, pkg.arch
        found = records.lookup(pkg, sha256) if records is not None else None
        source, arch = found if found else (name, arch)
    repo_id = apt_repo_id(repo_uri) if repo_uri else apt_repo_id_from_file_uri(uri)
    return Artifact(filename=pool_name, sha256=sha256.lower(), name=name, source=source, version=version,
                    arch=arch, repo=repo_id, sha512=sha512.lower() if sha512 else None)
