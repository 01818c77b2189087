"""Evidence bundles as a compromised UpdateVM would hand them over.

The machine that writes a bundle (``rebuildgate collect``) is trusted less
than the one that reads it, so the tests tamper with bundles in every way
the reader must survive: forged signatures, a document for another file,
paths that leave the bundle through ``..`` or a symlink, huge files and
named pipes.  Each helper changes one document of an existing bundle in
place and returns what it planted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

#: The attacks :func:`attack` knows, in the order the tests run them.
ATTACKS = ("forged-signature", "document-for-another-file", "symlinked-document",
           "symlinked-rebuilder-directory", "huge-document", "fifo", "directory")


def metadata_path(bundle: Path, rebuilder: str, source: str, version: str) -> Path:
    """Where a package-rebuilder document sits in a bundle (layouts.py's mapping)."""
    return bundle / rebuilder / "sources" / source / version / "metadata"


def forge_signature(path: Path) -> None:
    """Keep the document, replace every signature by one that cannot verify."""
    doc = json.loads(path.read_bytes())
    for sig in doc["signatures"]:
        sig["sig"] = "00" * 64
    path.write_text(json.dumps(doc))


def attack(kind: str, bundle: Path, rebuilder: str, source: str, version: str, *, other: Path,
           outside: Path, max_bytes: int) -> Path:
    """Plant attack *kind* at *rebuilder*'s document for source/version.

    *other* is a genuine, validly signed document of the same rebuilder for
    another file (it is swapped in); *outside* is a directory outside the
    bundle where a genuine copy of the document is put, reached only through
    a symlink the reader must never follow.  (A ``..`` in a path cannot be
    planted by the bundle's writer: paths are built by the reader from
    validated names, see tests/common/test_bundle.py.)
    """
    target = metadata_path(bundle, rebuilder, source, version)
    genuine = target.read_bytes()
    if kind == "forged-signature":
        forge_signature(target)
    elif kind == "document-for-another-file":
        target.write_bytes(other.read_bytes())
    elif kind == "symlinked-document":
        copy = outside / f"{rebuilder}-{source}-metadata"
        outside.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(genuine)
        target.unlink()
        target.symlink_to(copy)
    elif kind == "symlinked-rebuilder-directory":
        moved = outside / f"{rebuilder}-tree"
        shutil.rmtree(moved, ignore_errors=True)
        shutil.move(str(bundle / rebuilder), moved)
        (bundle / rebuilder).symlink_to(moved, target_is_directory=True)
    elif kind == "huge-document":
        with target.open("ab") as f:
            f.write(b" " * (max_bytes + 1))
    elif kind == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif kind == "directory":
        target.unlink()
        target.mkdir()
        (target / "metadata").write_bytes(genuine)
    else:
        raise ValueError(f"unknown bundle attack {kind!r}")
    return target
