"""Read name, version, source and arch from a local .deb or .rpm file.

The fields come from the package itself (python-apt's ``apt_inst`` for
debs, the ``rpm`` module for rpms), never from its file name, which anyone
can rename.  The ``filename`` of the resulting Artifact is the canonical
name rebuilders use in their links.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from .errors import PackageError
from .model import Artifact


def file_digests(path: Path | str, with_sha512: bool = True) -> tuple[str, str | None]:
    """sha256 (and sha512, unless not wanted: it doubles the cost) of a file,
    read once in 1 MiB blocks."""
    h256, h512 = hashlib.sha256(), (hashlib.sha512() if with_sha512 else None)
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h256.update(block)
                if h512 is not None:
                    h512.update(block)
    except OSError as e:
        raise PackageError(f"{path}: cannot read: {e.strerror or e}") from None
    return h256.hexdigest(), h512.hexdigest() if h512 is not None else None


def _magic(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as e:
        raise PackageError(f"{path}: cannot read: {e.strerror or e}") from None


Digests = tuple[str, str | None]


#: A real control member is a few KiB; anything larger is refused unread.
MAX_CONTROL_BYTES = 1 << 20
#: zstd has no decompressor in Python's standard library: such members go
#: through python-apt, so only small ones (this many bytes, compressed).
MAX_ZSTD_MEMBER = 64 << 10


def _ar_member(path: Path, prefix: str) -> tuple[str, bytes]:
    """(name, data) of the first ar member whose name starts with *prefix*,
    read with bounds: a .deb is an attacker's file until it is verified."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"!<arch>\n":
                raise PackageError(f"{path}: not a Debian package (no ar archive header)")
            while True:
                header = f.read(60)
                if len(header) < 60 or header[58:60] != b"`\n":
                    raise PackageError(f"{path}: not a readable Debian package: no {prefix} member")
                name = header[:16].decode("ascii", "replace").strip().rstrip("/")
                try:
                    size = int(header[48:58].decode("ascii").strip())
                except ValueError:
                    raise PackageError(f"{path}: not a readable Debian package: broken ar header") from None
                if name.startswith(prefix):
                    if size > MAX_CONTROL_BYTES:
                        raise PackageError(f"{path}: its {name} member is {size} bytes (at most "
                                           f"{MAX_CONTROL_BYTES}); refused")
                    return name, f.read(size)
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError as e:
        raise PackageError(f"{path}: cannot read: {e.strerror or e}") from None


def _control_text(path: Path) -> bytes:
    """The ``control`` file of a .deb, decompressed with bounds (no member of
    the control archive may be larger than MAX_CONTROL_BYTES: a small .deb
    must not unpack into gigabytes before it is judged)."""
    import tarfile

    name, data = _ar_member(path, "control.tar")
    if name.endswith(".zst"):
        if len(data) > MAX_ZSTD_MEMBER:
            raise PackageError(f"{path}: its zstd control member is {len(data)} bytes (at most "
                               f"{MAX_ZSTD_MEMBER}); refused")
        import apt_inst

        try:
            return apt_inst.DebFile(str(path)).control.extractdata("control")
        except (SystemError, LookupError) as e:
            raise PackageError(f"{path}: not a readable Debian package: {e}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                if member.size > MAX_CONTROL_BYTES:
                    raise PackageError(f"{path}: its control archive holds {member.name} of {member.size} "
                                       f"bytes (at most {MAX_CONTROL_BYTES}); refused")
                if member.isfile() and member.name in ("control", "./control"):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read(MAX_CONTROL_BYTES + 1)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise PackageError(f"{path}: not a readable Debian package: {e}") from None
    raise PackageError(f"{path}: not a readable Debian package: no control file")


def read_deb(path: Path, repo: str | None = None, digests: Digests | None = None) -> Artifact:
    """The package a .deb says it is (its control file); *digests*, if the
    caller hashed the file already, spare hashing it again."""
    if _magic(path) != b"!<arch>\n":
        raise PackageError(f"{path}: not a Debian package (no ar archive header)")
    text = _control_text(path)
    try:
        import apt_pkg

        control = apt_pkg.TagSection(text)
        name, version, arch = control["Package"], control["Version"], control["Architecture"]
        source_field = control.get("Source", "") or name
    except (SystemError, LookupError, KeyError, ValueError) as e:
        raise PackageError(f"{path}: not a readable Debian package: {e}") from None
    source = source_field.split("(", 1)[0].strip() or name
    upstream = version.split(":", 1)[1] if ":" in version else version
    sha256, sha512 = digests or file_digests(path)
    return Artifact(filename=f"{name}_{upstream}_{arch}.deb", sha256=sha256, sha512=sha512, name=name,
                    source=source, version=version, arch=arch, repo=repo)


def read_rpm(path: Path, repo: str | None = None, digests: Digests | None = None) -> Artifact:
    """The package an .rpm says it is (its header); *digests* as for read_deb."""
    if _magic(path)[:4] != b"\xed\xab\xee\xdb":
        raise PackageError(f"{path}: not an RPM package (no rpm lead)")
    try:
        import rpm

        ts = rpm.TransactionSet()
        ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
        with open(path, "rb") as f:
            hdr = ts.hdrFromFdno(f.fileno())
        name, version, release, arch = (str(hdr[t]) for t in (rpm.RPMTAG_NAME, rpm.RPMTAG_VERSION,
                                                                   rpm.RPMTAG_RELEASE, rpm.RPMTAG_ARCH))
        epoch = hdr[rpm.RPMTAG_EPOCH]
        sourcerpm = hdr[rpm.RPMTAG_SOURCERPM] or ""
    except (rpm.error, OSError, KeyError, ValueError) as e:
        raise PackageError(f"{path}: not a readable RPM package: {e}") from None
    full = f"{version}-{release}"
    source = sourcerpm_name(str(sourcerpm)) or name
    sha256, sha512 = digests or file_digests(path)
    return Artifact(filename=f"{name}-{full}.{arch}.rpm", sha256=sha256, sha512=sha512, name=name,
                    source=source, version=f"{epoch}:{full}" if epoch not in (None, "", 0) else full,
                    arch=arch, repo=repo)


def sourcerpm_name(sourcerpm: str) -> str | None:
    """``foo-bar-1.0-1.fc40.src.rpm`` -> ``foo-bar`` (name is all but the last two dashes)."""
    if not sourcerpm.endswith(".src.rpm"):
        return None
    parts = sourcerpm[: -len(".src.rpm")].rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def read_package(path: Path, repo: str | None = None, digests: Digests | None = None) -> Artifact:
    """An Artifact for a local .deb or .rpm, by content (not by file name)."""
    magic = _magic(path)
    if magic == b"!<arch>\n":
        return read_deb(path, repo, digests)
    if magic[:4] == b"\xed\xab\xee\xdb":
        return read_rpm(path, repo, digests)
    kind = "a Debian package" if path.name.endswith(".deb") else "an RPM package" if path.name.endswith(".rpm") \
        else "a Debian or RPM package"
    raise PackageError(f"{path}: not {kind} (use --artifact NAME --sha256 HEX for other files)")
