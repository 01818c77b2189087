"""Shared test fixtures for rebuildgate: keys, signed links in every format
rebuilders publish, tiny reproducible packages and repositories, and a local
HTTP rebuilder with fault injection.

Nothing here imports rebuildgate, so these helpers keep working (and can be
tested) while the library changes.
"""

from .keys import GpgKey, TestKey, make_gpg_key, make_key
from .links import (
    make_link,
    rebuilderd_public_pem,
    sign_dsse,
    sign_legacy,
    sign_legacy_gpg,
    sign_rebuilderd,
    tamper,
)
from .packages import build_deb, build_rpm, make_apt_archive, make_apt_repo, make_rpm_repo, sha256_file
from .server import Fault, RebuilderServer, publish_package_rebuilder

__all__ = [
    "Fault",
    "GpgKey",
    "RebuilderServer",
    "TestKey",
    "build_deb",
    "build_rpm",
    "make_apt_archive",
    "make_apt_repo",
    "make_gpg_key",
    "make_key",
    "make_link",
    "make_rpm_repo",
    "publish_package_rebuilder",
    "rebuilderd_public_pem",
    "sha256_file",
    "sign_dsse",
    "sign_legacy",
    "sign_legacy_gpg",
    "sign_rebuilderd",
    "tamper",
]
