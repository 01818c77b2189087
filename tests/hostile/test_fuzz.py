"""Bounded fuzzing of everything that parses attacker-supplied bytes.

* ``verify_document`` on mutations of REAL signed documents in every format
  (legacy ed25519/ecdsa/rsa, DSSE, rebuilderd, OpenPGP in both encodings):
  only EvidenceError, and a mutated document verifies only if what was
  signed is byte-for-byte what the rebuilder signed.
* the rebuilderd lookup (``EvidenceSource.documents``) against a server
  answering random JSON: only FetchError, and only attestation URLs of the
  documented shape.
* ``read_package`` on random, truncated and corrupted .deb/.rpm bytes: only
  PackageError.

A few seconds each by default; ``REBUILDGATE_FUZZ_EXAMPLES=5000`` for a
longer run by hand (see helpers.py).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from securesystemslib.formats import encode_canonical

from rebuildgate.errors import EvidenceError, FetchError, PackageError
from rebuildgate.evidence import KeySet, load_gpg_keys, load_key_files, verify_document
from rebuildgate.fetch import MAX_REBUILDERD_RECORDS, EvidenceSource, Transport
from rebuildgate.model import Artifact
from rebuildgate.pkginfo import read_package
from rebuildgate.policy import FetchSettings, Rebuilder

from tests.support.keys import make_key
from tests.support.links import (make_link, rebuilderd_public_pem, sign_dsse, sign_legacy, sign_legacy_gpg,
                                 sign_rebuilderd)
from tests.support.packages import build_deb, build_rpm
from tests.support.server import Fault, RebuilderServer

from .helpers import fuzz_settings

DEB = "hello_1.0-1_all.deb"
PRODUCTS = {DEB: b"the package", "hello-doc_1.0-1_all.deb": b"docs"}


# ---------------------------------------------------------------------------
# Real signed documents, and their mutations


@dataclass
class Signed:
    name: str
    raw: bytes
    keyset: KeySet

    @property
    def payload(self) -> bytes:
        return signed_bytes(self.raw)


def signed_bytes(raw: bytes) -> bytes | None:
    """What a signature covers in *raw*, parsed the way a JSON reader would:
    the DSSE payload, or the canonical JSON of ``signed``; None if *raw* has
    neither (then it can never verify)."""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and ("payload" in doc or "payloadType" in doc):
            return base64.b64decode(doc["payload"], validate=True)
        if isinstance(doc, dict) and "signed" in doc:
            return encode_canonical(doc["signed"]).encode("utf-8")
    except Exception:  # noqa: BLE001 - anything unparseable has no signed bytes
        return None
    return None


def _keyset(name: str, *pems: Path) -> KeySet:
    return KeySet(name, load_key_files(pems, f"rebuilder[0] ({name})", Path("policy.toml")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gpg_key) -> list[Signed]:
    d = tmp_path_factory.mktemp("fuzz-keys")
    link = make_link(PRODUCTS)
    out = []
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = make_key(d, kind, f"k-{kind}")
        out.append(Signed(f"legacy-{kind}", sign_legacy(link, key.signer), _keyset("rb", key.public_pem)))
    key = make_key(d, "ed25519", "k-dsse")
    out.append(Signed("dsse", sign_dsse(link, key.signer), _keyset("rb", key.public_pem)))
    worker, daemon = make_key(d, "ed25519", "worker"), make_key(d, "ed25519", "daemon")
    out.append(Signed("rebuilderd", sign_rebuilderd(link, worker, daemon),
                      _keyset("rb", rebuilderd_public_pem(daemon, d / "daemon.pub"))))
    gpg_ks = KeySet("rb", load_gpg_keys([gpg_key.fingerprint], gpg_key.keyring, "rebuilder[0]",
                                        Path("policy.toml")))
    for encoding in ("sig", "signature"):
        out.append(Signed(f"openpgp-{encoding}", sign_legacy_gpg(link, gpg_key, encoding), gpg_ks))
    for s in out:  # the originals verify: the mutations start from real evidence
        verify_document(s.raw, s.keyset)
    return out


class Dup(dict):
    """A JSON object written with one key twice (the later value is the one a
    JSON reader keeps)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def dumps(value: Any) -> str:
    if isinstance(value, Dup):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value in a JSON tree (dict keys and list indexes)."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += nodes(v, path + (i,))
    return out


def get_at(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree[p]
    return tree


OTHER_VALUES = [None, True, False, 0, -1, 2**64, 1.5, "", "x", "00", [], {}, [None], {"": None}, "\udcff",
                "a" * 300]


def _mutate_tree(tree: Any, data: st.DataObject) -> Any:
    paths = nodes(tree)
    path = data.draw(st.sampled_from(paths), label="path")
    op = data.draw(st.sampled_from(["replace", "drop", "duplicate", "wrap", "edit-string", "add-key", "reorder"]),
                   label="op")
    if not path:
        return data.draw(st.sampled_from(OTHER_VALUES)) if op == "replace" else tree
    parent, last = get_at(tree, path[:-1]), path[-1]
    target = parent[last]
    if op == "replace":
        parent[last] = data.draw(st.sampled_from(OTHER_VALUES) | st.integers() | st.text(max_size=8), label="value")
    elif op == "drop":
        del parent[last]
    elif op == "duplicate":
        if isinstance(parent, dict):
            forged = data.draw(st.sampled_from(OTHER_VALUES), label="dup-value")
            first = data.draw(st.booleans(), label="dup-first")
            pairs = list(parent.items())
            extra = (last, forged)
            new = Dup(pairs + [extra] if not first else [extra] + pairs)
            if path[:-1]:
                get_at(tree, path[:-2])[path[-2]] = new
            else:
                tree = new
        else:
            parent.insert(last, copy.deepcopy(target))
    elif op == "wrap":
        parent[last] = [target]
    elif op == "edit-string" and isinstance(target, str) and target:
        i = data.draw(st.integers(0, len(target) - 1), label="index")
        c = data.draw(st.characters(codec="utf-8"), label="char")
        parent[last] = target[:i] + c + target[i + 1:]
    elif op == "add-key" and isinstance(target, dict):
        target[data.draw(st.text(max_size=6), label="key")] = data.draw(st.sampled_from(OTHER_VALUES))
    elif op == "reorder" and isinstance(target, list) and len(target) > 1:
        parent[last] = list(reversed(target))
    return tree


def mutate(raw: bytes, data: st.DataObject) -> bytes:
    """1-3 mutations: byte-level (flip, delete, insert, duplicate, truncate)
    or structural (on the JSON tree, or on the decoded DSSE payload)."""
    for _ in range(data.draw(st.integers(1, 3), label="rounds")):
        how = data.draw(st.sampled_from(["bytes", "tree", "tree", "payload"]), label="how")
        if how == "bytes" or not raw:
            n = len(raw)
            op = data.draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]), label="byte-op")
            i = data.draw(st.integers(0, max(n - 1, 0)), label="at")
            if op == "flip" and n:
                raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]
            elif op == "delete":
                raw = raw[:i] + raw[i + data.draw(st.integers(1, 16)):]
            elif op == "insert":
                raw = raw[:i] + data.draw(st.binary(min_size=1, max_size=8)) + raw[i:]
            elif op == "duplicate":
                raw = raw[:i] + raw[i:i + 32] + raw[i:]
            else:
                raw = raw[:i]
            continue
        try:
            tree = json.loads(raw)
        except ValueError:
            continue
        if how == "payload" and isinstance(tree, dict) and isinstance(tree.get("payload"), str):
            try:
                statement = json.loads(base64.b64decode(tree["payload"]))
            except ValueError:
                continue
            statement = _mutate_tree(statement, data)
            tree["payload"] = base64.b64encode(dumps(statement).encode("utf-8", "surrogatepass")).decode()
        else:
            tree = _mutate_tree(tree, data)
        raw = dumps(tree).encode("utf-8", "surrogatepass")
    return raw


@fuzz_settings(400)
@given(data=st.data())
def test_mutated_real_documents_never_verify_and_never_crash(corpus, data) -> None:
    original = data.draw(st.sampled_from(corpus), label="document")
    raw = mutate(original.raw, data)
    try:
        link = verify_document(raw, original.keyset, "fuzz")
    except EvidenceError:
        return
    # It verified: then what was signed must be exactly what the rebuilder signed.
    assert signed_bytes(raw) == original.payload, f"{original.name}: a changed document verified: {raw[:300]!r}"
    assert link.products == verify_document(original.raw, original.keyset).products


@fuzz_settings(200)
@given(data=st.data())
def test_documents_signed_by_another_key_never_verify(corpus, data) -> None:
    """The same mutations, checked against a keyset that never signed anything."""
    original = data.draw(st.sampled_from(corpus), label="document")
    other = data.draw(st.sampled_from([c for c in corpus if c.keyset is not original.keyset]), label="keys")
    raw = mutate(original.raw, data) if data.draw(st.booleans(), label="mutate") else original.raw
    with pytest.raises(EvidenceError):
        verify_document(raw, other.keyset)


# ---------------------------------------------------------------------------
# rebuilderd lookups answered with random JSON


_json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                 | st.text(max_size=12))
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_ids = st.integers(-5, 2**64) | st.booleans() | st.none() | st.text(max_size=5) | st.floats() | st.just("7")
_record = st.fixed_dictionaries(
    {}, optional={"name": st.sampled_from(["hello", "other", None, 5, ""]) | st.text(max_size=5),
                  "build_id": _ids, "artifact_id": _ids, "version": _json, "status": _json})
_page = (st.lists(_record, max_size=12).map(lambda r: {"total": len(r), "records": r})
         | st.lists(_record, max_size=12)
         | st.dictionaries(st.sampled_from(["records", "total", "x"]), _json, max_size=3)
         | _json)


def _body(value: Any, raw: bytes | None) -> bytes:
    if raw is not None:
        return raw
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def rebuilderd(tmp_path_factory):
    server = RebuilderServer(tmp_path_factory.mktemp("rebuilderd")).start()
    server.faults["/api/v1/builds/"] = Fault.body(b'{"an": "attestation"}')
    yield server
    server.stop()


ATTESTATION = re.compile(r"^/api/v1/builds/(-?\d+)/artifacts/(-?\d+)/attestation$")
SETTINGS = FetchSettings(connect_timeout=2, read_timeout=2, deadline=5, cache_dir=None)


@fuzz_settings(120)
@given(page=_page, raw=st.none() | st.binary(max_size=64) | st.sampled_from([b"[" * 5000, b"\xff\xfe{", b""]))
@example(page={"records": [{"name": "hello", "build_id": 1, "artifact_id": True}]}, raw=None)
@example(page={"records": [{"name": "hello", "build_id": 1, "artifact_id": 2}] * 50}, raw=None)
def test_rebuilderd_lookup_survives_any_answer(rebuilderd, page, raw) -> None:
    rebuilderd.faults["/api/v1/packages/binary"] = Fault.body(_body(page, raw), "application/json")
    transport = Transport(SETTINGS)  # a fresh one: no memo between examples
    source = EvidenceSource(Rebuilder("rbd", rebuilderd.url, "rebuilderd", keys=(Path("/k"),)), transport)
    art = Artifact("hello_1.0_amd64.deb", "a" * 64, name="hello", version="1.0", arch="amd64")
    try:
        docs = source.documents(art, time.monotonic() + SETTINGS.deadline)
    except FetchError:
        return
    finally:
        transport.close()
    assert 1 <= len(docs) <= MAX_REBUILDERD_RECORDS
    for doc in docs:
        assert doc.url.startswith(rebuilderd.url + "/")
        assert ATTESTATION.match(doc.url[len(rebuilderd.url):]), doc.url


# ---------------------------------------------------------------------------
# Package files


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fuzz-packages")
    return {"deb": build_deb(d, "hello", "2:1.0-1", source="hello-src").read_bytes(),
            "rpm": build_rpm(d, "hello", "1.0", "1", epoch=3).read_bytes()}


def _corrupt(base: bytes, data: st.DataObject) -> bytes:
    op = data.draw(st.sampled_from(["truncate", "flip", "splice", "random-tail", "random"]), label="op")
    n = len(base)
    if op == "truncate":
        return base[:data.draw(st.integers(0, n - 1))]
    if op == "flip":
        out = bytearray(base)
        for _ in range(data.draw(st.integers(1, 8))):
            out[data.draw(st.integers(0, n - 1))] ^= data.draw(st.integers(1, 255))
        return bytes(out)
    if op == "splice":
        i = data.draw(st.integers(0, n - 1))
        return base[:i] + data.draw(st.binary(max_size=64)) + base[i + data.draw(st.integers(0, 64)):]
    if op == "random-tail":
        return base[:data.draw(st.integers(0, 120))] + data.draw(st.binary(max_size=512))
    return data.draw(st.sampled_from([b"!<arch>\n", b"\xed\xab\xee\xdb", b""])) + data.draw(st.binary(max_size=512))


@fuzz_settings(300)
@given(data=st.data())
def test_read_package_on_corrupt_files_raises_only_package_error(tmp_path_factory, packages, data) -> None:
    base = packages[data.draw(st.sampled_from(sorted(packages)), label="kind")]
    blob = _corrupt(base, data)
    path = tmp_path_factory.getbasetemp() / "fuzz-package.deb"
    path.write_bytes(blob)
    try:
        art = read_package(path)
    except PackageError as e:
        assert "\n" not in str(e)
        return
    # Read despite the damage: the identity is still bound to these exact bytes.
    import hashlib
    assert art.sha256 == hashlib.sha256(blob).hexdigest()
    assert art.filename.endswith((".deb", ".rpm"))
