"""Rebuilder attestations (in-toto links) in every format rebuildgate reads.

Each signer here produces the bytes a real rebuilder would publish, using
in-toto's and securesystemslib's own code for the signed representation, so
the verifier is tested against what those libraries write, not against our
idea of it. The one format no Python library writes (rebuilderd's in-toto-rs
links) is assembled field by field after the real files in
/work/shared/compat/rebuilderd/, still signing securesystemslib's canonical
JSON with a securesystemslib signer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import attr
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from in_toto.models.link import Link
from in_toto.models.metadata import Envelope, Metablock
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import GPGSigner, Signer

from .keys import GpgKey, TestKey

DigestSpec = bytes | Mapping[str, str]


def digests(data: bytes) -> dict[str, str]:
    """The digests rebuilders record for an artifact: sha256 and sha512."""
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
    }


def _artifacts(spec: Mapping[str, DigestSpec] | None) -> dict[str, dict[str, str]]:
    if not spec:
        return {}
    return {
        name: digests(value) if isinstance(value, bytes) else dict(value)
        for name, value in spec.items()
    }


def make_link(
    products: Mapping[str, DigestSpec],
    name: str = "rebuild",
    materials: Mapping[str, DigestSpec] | None = None,
) -> Link:
    """An unsigned in-toto link.

    A `bytes` value is the artifact's content and is hashed (sha256 +
    sha512); a mapping is taken as the digest dict verbatim, so tests can
    write md5-only, upper-case or plainly wrong digests.
    """
    return Link(name=name, products=_artifacts(products), materials=_artifacts(materials))


def _dumps_legacy(metablock: Metablock) -> bytes:
    # in-toto's own serialization (what `Metablock.dump` writes).
    return str(metablock).encode("utf-8")


def sign_legacy(link: Link, *signers: Signer) -> bytes:
    """Legacy `{"signed": ..., "signatures": [...]}` metadata as in-toto
    writes it, signed by each securesystemslib signer in turn."""
    metablock = Metablock(signed=link)
    for signer in signers:
        metablock.create_signature(signer)
    return _dumps_legacy(metablock)


def gpg_signature(link: Link, key: GpgKey) -> dict[str, str]:
    """One OpenPGP signature over the link's canonical JSON, as
    securesystemslib's GPGSigner returns it: `keyid`, `sig`, `other_headers`."""
    _uri, public_key = GPGSigner.import_(key.keyid, str(key.homedir))
    signer = GPGSigner(public_key, str(key.homedir))
    return signer.sign(link.signable_bytes).to_dict()


def sign_legacy_gpg(link: Link, key: GpgKey, encoding: str = "sig") -> bytes:
    """Legacy metadata signed with OpenPGP.

    `encoding="sig"` is what securesystemslib's GPGSigner (in-toto 2+/3)
    writes; `encoding="signature"` is in-toto 1.x's layout (as in
    compat/apt-transport-in-toto/rebuild.5863835e.link): the same signature
    data with `sig` renamed to `signature`.
    """
    signature = gpg_signature(link, key)
    if encoding == "signature":
        signature["signature"] = signature.pop("sig")
    elif encoding != "sig":
        raise ValueError(f"unknown gpg signature encoding {encoding!r}")
    return _dumps_legacy(Metablock(signed=link, signatures=[signature]))


def sign_dsse(link: Link, *signers: Signer) -> bytes:
    """A DSSE envelope (payloadType application/vnd.in-toto+json) exactly as
    in-toto 3 creates and dumps it."""
    envelope = Envelope.from_signable(link)
    for signer in signers:
        envelope.create_signature(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8")


STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
PREDICATES = {
    "link-v0.3": "https://in-toto.io/attestation/link/v0.3",
    "slsa-v0.1": "https://slsa.dev/provenance/v0.1",
    "slsa-v0.2": "https://slsa.dev/provenance/v0.2",
    "slsa-v1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
}


def _predicate(kind: str) -> dict[str, Any]:
    """A small, plausible predicate body of each kind (never read by the verifier)."""
    if kind == "link-v0.3":
        return {"name": "rebuild", "command": ["dpkg-buildpackage"], "materials": [], "byproducts": {},
                "environment": {}}
    if kind in ("slsa-v0.1", "slsa-v0.2"):
        return {"builder": {"id": "https://rebuilder.example/"}, "buildType": "https://rebuilder.example/deb",
                "invocation": {}, "materials": []}
    if kind == "slsa-v1":
        return {"buildDefinition": {"buildType": "https://rebuilder.example/deb", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://rebuilder.example/"}}}
    return {"spdxVersion": "SPDX-2.3"}


def make_statement(
    subjects: Mapping[str, DigestSpec] | list[tuple[str, DigestSpec]],
    predicate: str = "slsa-v1",
    version: str = "v1",
) -> dict[str, Any]:
    """An in-toto Statement (`version` "v0.1" or "v1") with a predicate of
    kind `predicate` (a key of PREDICATES, or a predicate type URI).

    Subjects are name -> content (hashed) or digest dict, as for make_link;
    a list of pairs may name one file twice.
    """
    pairs = subjects.items() if isinstance(subjects, Mapping) else subjects
    return {
        "_type": STATEMENT_V01 if version == "v0.1" else STATEMENT_V1,
        "subject": [{"name": name, "digest": digests(value) if isinstance(value, bytes) else dict(value)}
                    for name, value in pairs],
        "predicateType": PREDICATES.get(predicate, predicate),
        "predicate": _predicate(predicate),
    }


def sign_statement(payload: Mapping[str, Any] | bytes, *signers: Signer,
                   payload_type: str = "application/vnd.in-toto+json") -> bytes:
    """A DSSE envelope around `payload` (a Statement, or any JSON object,
    or raw bytes), signed with securesystemslib's DSSE implementation."""
    from securesystemslib.dsse import Envelope as DsseEnvelope

    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    envelope = DsseEnvelope(raw, payload_type, {})
    for signer in signers:
        envelope.sign(signer)
    return json.dumps(envelope.to_dict()).encode("utf-8")


def rebuilderd_keyid(raw_public_key: bytes) -> str:
    """The keyid in-toto-rs gives an ed25519 key (32 raw bytes).

    It hashes the canonical JSON of the key *with* `keyid_hash_algorithms`
    (securesystemslib 0.x style), so it never equals securesystemslib 1.x's
    keyid for the same key. Checked against the keys and links in
    compat/rebuilderd/.
    """
    key = {
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyid_hash_algorithms": ["sha256", "sha512"],
        "keyval": {"public": raw_public_key.hex()},
    }
    return hashlib.sha256(encode_canonical(key).encode("utf-8")).hexdigest()


def _raw_ed25519(key: TestKey) -> bytes:
    if key.kind != "ed25519":
        raise ValueError("rebuilderd signs with ed25519 keys only")
    public = load_pem_public_key(key.public_pem.read_bytes())
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def rebuilderd_signed(link: Link) -> dict[str, Any]:
    """The `signed` part as in-toto-rs serializes it: its field order and an
    `environment` of null (which in-toto's Link model refuses to load)."""
    fields = attr.asdict(link)
    return {
        "_type": "link",
        "name": fields["name"],
        "materials": fields["materials"],
        "products": fields["products"],
        "environment": None,
        "byproducts": fields["byproducts"],
        "command": fields["command"],
    }


def sign_rebuilderd(
    link: Link, key: TestKey, daemon_key: TestKey | None = None
) -> bytes:
    """A rebuilderd attestation: compact JSON, `signatures` first, each
    `{"keyid", "sig"}` with in-toto-rs keyids, signatures over the canonical
    JSON of `signed`. rebuilderd signs with the worker's key and then the
    daemon's (`daemon_key`); only the daemon's key is published."""
    signed = rebuilderd_signed(link)
    payload = encode_canonical(signed).encode("utf-8")
    signatures = []
    for k in (key, daemon_key):
        if k is None:
            continue
        keyid = rebuilderd_keyid(_raw_ed25519(k))
        signatures.append({"keyid": keyid, "sig": k.signer.sign(payload).signature})
    doc = {"signatures": signatures, "signed": signed}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


# DER SubjectPublicKeyInfo header for Ed25519 as rebuilderd writes it: the
# AlgorithmIdentifier carries an explicit NULL parameter (05 00), which RFC
# 8410 forbids and `cryptography` therefore refuses. The raw key follows.
_REBUILDERD_SPKI_PREFIX = bytes.fromhex("302c300706032b65700500032100")


def rebuilderd_public_pem(key: TestKey, path: Path) -> Path:
    """Write `key`'s public half as rebuilderd publishes it (PEM SPKI with a
    NULL algorithm parameter, LF line ends) and return `path`."""
    der = _REBUILDERD_SPKI_PREFIX + _raw_ed25519(key)
    body = base64.b64encode(der).decode("ascii")
    pem = "-----BEGIN PUBLIC KEY-----\n" + body + "\n-----END PUBLIC KEY-----\n"
    path = Path(path)
    path.write_text(pem)
    return path


def _flip(hexdigest: str) -> str:
    """The same digest with its last hex digit changed."""
    last = hexdigest[-1].lower()
    return hexdigest[:-1] + ("0" if last != "0" else "1")


def _tamper_products(
    signed: dict[str, Any],
    artifact: str | None,
    new_digests: Mapping[str, str] | None,
) -> None:
    products = signed["products"]
    names = [artifact] if artifact is not None else list(products)
    for name in names:
        if new_digests is not None:
            products[name] = dict(new_digests)
        else:
            products[name] = {alg: _flip(d) for alg, d in products[name].items()}


def tamper(
    doc: bytes,
    artifact: str | None = None,
    new_digests: Mapping[str, str] | None = None,
) -> bytes:
    """Change product digests in a signed document without re-signing it, so
    its signatures no longer verify. Works on legacy, rebuilderd and DSSE
    documents.

    By default every digest of every product gets its last hex digit changed;
    `artifact` limits that to one product, `new_digests` replaces its digest
    dict (e.g. to make a forged link claim the hash of a malicious package).
    """
    data = json.loads(doc)
    if "payload" in data:  # DSSE: the signed bytes are the payload
        statement = json.loads(base64.b64decode(data["payload"]))
        _tamper_products(statement, artifact, new_digests)
        payload = json.dumps(statement, sort_keys=True).encode("utf-8")
        data["payload"] = base64.b64encode(payload).decode("ascii")
        return json.dumps(data, sort_keys=True).encode("utf-8")
    _tamper_products(data["signed"], artifact, new_digests)
    if b"\n" in doc:  # keep the layout: in-toto's indented JSON ...
        return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
    return json.dumps(data, separators=(",", ":")).encode("utf-8")  # ... or compact
