"""A set of fake rebuilders: key, evidence tree, optional HTTP server each.

Most tests need "N rebuilders, some honest, some not"; this builds them
once, on top of keys.py, links.py and server.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .keys import TestKey, make_key
from .links import make_link, sign_dsse, sign_legacy, sign_rebuilderd
from .policy import RebuilderEntry
from .server import RebuilderServer, publish_package_rebuilder


@dataclass
class FakeRebuilder:
    """One rebuilder that publishes in package-rebuilder layout."""

    name: str
    key: TestKey
    root: Path
    server: RebuilderServer | None = None  # None: reached as file://

    @property
    def url(self) -> str:
        return self.server.url if self.server else f"file://{self.root}"

    def sign(self, products: Mapping[str, bytes | Mapping[str, str]], fmt: str = "legacy",
             key: TestKey | None = None) -> bytes:
        link = make_link(products)
        signer = key or self.key
        if fmt == "dsse":
            return sign_dsse(link, signer.signer)
        if fmt == "rebuilderd":
            return sign_rebuilderd(link, signer)
        return sign_legacy(link, signer.signer)

    def publish(self, source: str, version: str, products: Mapping[str, bytes | Mapping[str, str]],
                fmt: str = "legacy", key: TestKey | None = None) -> bytes:
        """Sign a link over *products* and publish it for source/version (no epoch)."""
        doc = self.sign(products, fmt, key)
        publish_package_rebuilder(self.root, source, version, doc, keyid8=self.key.keyid[:8])
        return doc

    def entry(self, **extra: Any) -> RebuilderEntry:
        return RebuilderEntry(self.name, self.url, [self.key.public_pem], extra=extra)


def make_rebuilders(tmp_path: Path, count: int, server_factory=None, kind: str = "ed25519") -> list[FakeRebuilder]:
    """*count* rebuilders named rb1..rbN; with *server_factory* (the
    ``rebuilder_server`` fixture) each is served over HTTP, else as file://."""
    out = []
    for i in range(1, count + 1):
        root = tmp_path / f"rb{i}-tree"
        root.mkdir(parents=True, exist_ok=True)
        key = make_key(tmp_path / "keys", kind, f"rb{i}")
        server = server_factory(root) if server_factory else None
        out.append(FakeRebuilder(f"rb{i}", key, root, server))
    return out


def attest_packages(rebuilders: list[FakeRebuilder], count: int, prefix: str = "p",
                    version: str = "1.0") -> list[tuple[str, str, bytes]]:
    """Publish *count* small packages ``{prefix}{i}``, each attested by every
    one of *rebuilders*; (name, file name, content) of each, in order."""
    out = []
    for i in range(count):
        name = f"{prefix}{i}"
        filename, content = f"{name}_{version}_all.deb", f"package {name}".encode()
        for rb in rebuilders:
            rb.publish(name, version, {filename: content})
        out.append((name, filename, content))
    return out
