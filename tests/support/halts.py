"""Halt signers and a halt feed for tests: K of N developers, one file:// feed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Sequence

from rebuildgate import halt

from .keys import TestKey, make_key

LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)


class HaltTeam:
    """Signers (alice, bob, carol by default) that sign statements and feeds.

    ``tables()`` and ``arrays()`` give the policy's ``[halt]`` section for
    :func:`tests.support.policy.write_policy`.
    """

    def __init__(self, directory: Path, k: int = 2, names: Sequence[str] = ("alice", "bob", "carol"),
                 **halt_extra: Any) -> None:
        self.directory = directory
        self.keys: dict[str, TestKey] = {n: make_key(directory / "halt-keys", "ed25519", n) for n in names}
        self.feed = directory / "halt-feed" / "halts.json"
        self.feed.parent.mkdir(parents=True, exist_ok=True)
        self.k = k
        self.extra = halt_extra
        self.version = 0

    def tables(self) -> dict[str, dict[str, Any]]:
        return {"halt": {"feeds": [f"file://{self.feed}"], "threshold": self.k,
                         "state_dir": str(self.directory / "halt-state"), **self.extra}}

    def arrays(self) -> dict[str, list[dict[str, Any]]]:
        return {"halt.signer": [{"name": n, "keys": [str(k.public_pem)]} for n, k in self.keys.items()]}

    def signer(self, name: str) -> Any:
        return halt.load_signer(self.keys[name].private_pem)

    def _sign(self, payload: dict, signers: Sequence[str]) -> bytes:
        doc: bytes | None = None
        for name in signers:
            doc = halt.sign_document(payload, self.signer(name), json.loads(doc)["signatures"] if doc else None)
        return doc or json.dumps({"signed": payload, "signatures": []}).encode()

    def statement(self, *signers: str, ident: str = "H-1", action: str = "halt", version: int = 1,
                  expires: dt.datetime = LATER, **match: Any) -> bytes:
        """A statement signed by *signers*; without match keywords it covers everything."""
        payload = halt.statement_payload(ident, action, version, f"reason for {ident}", expires,
                                         everything=not match and action == "halt", **match)
        return self._sign(payload, signers)

    def publish(self, *statements: bytes, version: int | None = None, signers: Sequence[str] = ("alice",),
                expires: dt.datetime = LATER) -> None:
        """Write the feed (next version unless given) holding *statements*."""
        self.version = version if version is not None else self.version + 1
        self.feed.write_bytes(self._sign(halt.feed_payload(self.version, expires, statements), signers))
