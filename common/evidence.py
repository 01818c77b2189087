"""Parse rebuilders' documents and check their signatures.

A document becomes a :class:`~rebuildgate.model.SignedLink` only after a
signature on it verified with a key the policy gives to *that* rebuilder;
anything else raises an :class:`~rebuildgate.errors.EvidenceError` whose
``kind`` says what it is.  Three encodings are read, all verified with
securesystemslib (no gpg subprocess per document):

* legacy in-toto metablocks ``{"signed": ..., "signatures": [...]}`` signed
  with ed25519 / ecdsa / rsa keys, or with OpenPGP in either encoding
  (``sig`` as securesystemslib's GPGSigner writes, ``signature`` as in-toto
  1.x wrote);
* DSSE envelopes with payload type ``application/vnd.in-toto+json``;
* rebuilderd's in-toto-rs links: ``environment`` null, two signatures whose
  keyids are computed differently, and ed25519 keys published as PEM with a
  NULL algorithm parameter.  Keyids are hints only: when no keyid matches,
  every key of the rebuilder is tried.

The signed payload is checked against in-toto's link format (see :func:`_products`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, SSlibKey

from .errors import (
    BadSignature,
    ConfigError,
    EvidenceError,
    MalformedEvidence,
    UnknownKey,
    UnsignedEvidence,
    UnsupportedEvidence,
)
from .model import SignedLink

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIGNATURES = 16  # more than this on one document is an attack, not a rebuilder
_ED25519_OID = bytes.fromhex("06032b6570")


@dataclass(frozen=True)
class TrustedKey:
    """One public key the policy trusts for one rebuilder.

    ``identity`` is stable for the same key material however it was loaded
    (a PEM file, a second copy of it, an OpenPGP subkey of the same primary),
    so that the decision can refuse to count one key twice.
    """

    key: Key
    identity: str
    label: str  # file path or fingerprint, for messages
    expired: str | None = None  # why an OpenPGP key must not be used, if so


@dataclass
class KeySet:
    """All keys of one rebuilder, indexed by keyid for the fast path."""

    rebuilder: str
    keys: list[TrustedKey] = field(default_factory=list)

    def by_keyid(self, keyid: str) -> list[TrustedKey]:
        k = keyid.lower()
        return [t for t in self.keys if t.key.keyid.lower() == k]


# --------------------------------------------------------------------------
# Loading keys (once per process: this is the expensive part for OpenPGP)


def _pem_to_crypto(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem)
    except (ValueError, TypeError):
        pass
    # rebuilderd writes ed25519 SPKI with a NULL algorithm parameter, which
    # cryptography refuses; the raw key is the last 32 bytes of the DER.
    text = pem.decode("ascii", "replace")
    if "-----BEGIN PUBLIC KEY-----" not in text:
        raise ValueError("not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')")
    body = text.split("-----BEGIN PUBLIC KEY-----", 1)[1].split("-----END PUBLIC KEY-----", 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("PEM body is not base64") from None
    if _ED25519_OID in der[:16] and len(der) in (44, 46) and der[-35:-32] == b"\x03\x21\x00":
        return Ed25519PublicKey.from_public_bytes(der[-32:])
    raise ValueError("unsupported or corrupt public key")


def _sslib_keys(crypto_key: Any) -> list[SSlibKey]:
    """securesystemslib keys for a cryptography key, one per plausible scheme.

    RSA links exist with both PSS (in-toto's default) and PKCS#1 v1.5
    signatures, and the document does not say which, so both are tried.
    """
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    if isinstance(crypto_key, RSAPublicKey):
        return [SSlibKey.from_crypto(crypto_key, scheme=s)
                for s in ("rsassa-pss-sha256", "rsa-pkcs1v15-sha256")]
    return [SSlibKey.from_crypto(crypto_key)]


def load_pem_keys(paths: Iterable[Path], where: str, policy_path: Path) -> list[TrustedKey]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    out: list[TrustedKey] = []
    for path in paths:
        try:
            crypto_key = _pem_to_crypto(path.read_bytes())
            identity = "spki:" + hashlib.sha256(
                crypto_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
            keys = _sslib_keys(crypto_key)
        except (OSError, ValueError) as e:
            raise ConfigError(policy_path, f"{where}.keys", f"cannot load key file {path}: {e}") from None
        out.extend(TrustedKey(k, identity, str(path)) for k in keys)
    return out


def load_gpg_keys(fingerprints: Iterable[str], keyring: Path, where: str,
                  policy_path: Path) -> list[TrustedKey]:
    """Export the trusted OpenPGP keys from *keyring* once, for in-process checks.

    The keyring (binary or armored) is imported into a throwaway GNUPGHOME so
    the admin's and root's own keyrings are never read or changed.  Subkeys
    of a trusted primary key are trusted too (rebuilders sign with them), and
    expired or revoked keys are loaded but marked, so their signatures are
    reported as what they are instead of counted.
    """
    import gnupg
    from securesystemslib.signer import GPGSigner

    # python-gnupg logs gpg's exit codes itself; our ConfigError says it in one line.
    logging.getLogger("gnupg").setLevel(logging.CRITICAL)
    wanted = [fp.upper() for fp in fingerprints]
    home = tempfile.mkdtemp(prefix="rbg-gpg-")
    try:
        gpg = gnupg.GPG(gnupghome=home)
        try:
            data = keyring.read_bytes()
        except OSError as e:
            raise ConfigError(policy_path, f"{where}.gpg_keyring", f"cannot read {keyring}: {e.strerror}") from None
        result = gpg.import_keys(data)
        if not result.fingerprints:
            raise ConfigError(policy_path, f"{where}.gpg_keyring",
                              f"{keyring} holds no OpenPGP public keys (empty or not a keyring)")
        listed = gpg.list_keys()
        out: list[TrustedKey] = []
        for fp in wanted:
            primary = next((k for k in listed if k["fingerprint"].upper() == fp
                            or any((s[2] or "").upper() == fp for s in k.get("subkeys", []))), None)
            if primary is None:
                raise ConfigError(policy_path, f"{where}.gpg_keys", f"key {fp} is not in {keyring}")
            expired = None
            if primary.get("trust") == "r":
                expired = "revoked"
            elif primary.get("trust") == "e" or (primary.get("expires") and
                                                 float(primary["expires"]) < time.time()):
                expired = "expired"
            identity = "openpgp:" + primary["fingerprint"].upper()
            ids = [primary["fingerprint"]] + [s[2] for s in primary.get("subkeys", []) if s[2]]
            for keyid in ids:
                try:
                    _, key = GPGSigner.import_(keyid.lower(), homedir=home)
                except Exception as e:  # noqa: BLE001 - gpg failures come in many types
                    if keyid == primary["fingerprint"]:
                        raise ConfigError(policy_path, f"{where}.gpg_keys",
                                          f"cannot export key {fp} from {keyring}: {e}") from None
                    continue
                out.append(TrustedKey(key, identity, f"OpenPGP {keyid.upper()}", expired))
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def load_keyset(rebuilder: Any, index: int, policy_path: Path, section: str = "rebuilder") -> KeySet:
    """Load every key the policy gives to *rebuilder* (a policy.Rebuilder or HaltSigner)."""
    where = f"{section}[{index}] ({rebuilder.name})"
    keys = load_pem_keys(rebuilder.keys, where, policy_path)
    if rebuilder.gpg_keys and rebuilder.gpg_keyring:
        keys += load_gpg_keys(rebuilder.gpg_keys, rebuilder.gpg_keyring, where, policy_path)
    if not keys:
        raise ConfigError(policy_path, f"{where}.keys", "no usable keys")
    return KeySet(rebuilder.name, keys)


# --------------------------------------------------------------------------
# Verifying documents


def _json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise MalformedEvidence("JSON nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise MalformedEvidence(f"not JSON: {e}") from None


def _signatures(entries: Any) -> list[Signature]:
    if not isinstance(entries, list):
        raise MalformedEvidence("'signatures' is not a list")
    if not entries:
        raise UnsignedEvidence("document carries no signature")
    if len(entries) > MAX_SIGNATURES:
        raise MalformedEvidence(f"document carries {len(entries)} signatures (max {MAX_SIGNATURES})")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyid"), str):
            raise MalformedEvidence("signature entry without a keyid")
        entry = dict(entry)
        if "sig" not in entry and "signature" in entry:  # in-toto 1.x OpenPGP encoding
            entry["sig"] = entry.pop("signature")
        if not isinstance(entry.get("sig"), str):
            raise MalformedEvidence("signature entry without a signature value")
        try:
            out.append(Signature.from_dict(entry))
        except (KeyError, TypeError, ValueError) as e:
            raise MalformedEvidence(f"bad signature entry: {e}") from None
    return out


def _verify(signatures: list[Signature], data: bytes, keyset: KeySet) -> TrustedKey:
    """Return the trusted key that verified one of *signatures* over *data*."""
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError

    known_id = False
    expired: TrustedKey | None = None
    for sig in signatures:
        candidates = keyset.by_keyid(sig.keyid)
        known_id = known_id or bool(candidates)
        # Keyids are hints (rebuilderd computes them differently): if none
        # matches, try every key of this rebuilder.
        for trusted in candidates or keyset.keys:
            is_gpg = trusted.key.keytype in ("rsa", "dsa", "eddsa") and trusted.key.scheme.startswith("pgp+")
            if is_gpg != ("other_headers" in sig.unrecognized_fields):
                continue
            probe = Signature(trusted.key.keyid, sig.signature, dict(sig.unrecognized_fields))
            try:
                trusted.key.verify_signature(probe, data)
            except (UnverifiedSignatureError, VerificationError, ValueError, TypeError):
                continue
            except Exception:  # noqa: BLE001 - a crafted signature must not crash us
                continue
            if trusted.expired:
                expired = trusted
                continue
            return trusted
    if expired is not None:
        raise BadSignature(f"signed by {expired.expired} key {expired.label}")
    ids = ", ".join(s.keyid[:16] for s in signatures)
    if known_id:
        raise BadSignature(f"signature by a trusted key of {keyset.rebuilder} does not verify (keyid {ids})")
    raise UnknownKey(f"no signature verifies with {keyset.rebuilder}'s keys (signed by keyid {ids})")


def parse_metablock(raw: bytes) -> tuple[Any, list[Signature], bytes]:
    """(signed, signatures, canonical bytes) of a legacy ``{"signed", "signatures"}`` document."""
    doc = _json(raw)
    if not isinstance(doc, dict) or "signed" not in doc:
        raise MalformedEvidence("not a signed document ({'signed': ..., 'signatures': [...]})")
    return _metablock_parts(doc)


def _metablock_parts(doc: dict) -> tuple[Any, list[Signature], bytes]:
    sigs = _signatures(doc.get("signatures"))
    try:
        data = encode_canonical(doc["signed"]).encode("utf-8")
    except Exception as e:  # noqa: BLE001 - FormatError for floats etc.
        raise MalformedEvidence(f"signed payload cannot be canonicalized: {e}") from None
    return doc["signed"], sigs, data


def signers_of(signatures: list[Signature], data: bytes, keysets: Iterable[KeySet]) -> dict[str, str]:
    """Which key owners produced a valid signature over *data*: owner -> key identity.

    Each owner counts once however many signatures it made, and a key that
    two owners share counts for the first only, so a threshold over the
    result is a threshold of distinct people and distinct keys.  Forged,
    unknown-key and expired-key signatures simply do not appear.
    """
    found: dict[str, str] = {}
    used: set[str] = set()
    for keyset in keysets:
        for sig in signatures:
            try:
                trusted = _verify([sig], data, keyset)
            except EvidenceError:
                continue
            if trusted.identity not in used:
                found[keyset.rebuilder] = trusted.identity
                used.add(trusted.identity)
                break
    return found


_HEX = re.compile(r"[0-9a-fA-F]+")
_LINK_FIELDS = {"name": str, "materials": dict, "products": dict, "byproducts": dict, "command": list,
                "environment": dict}


def _hash_dicts(value: Any, field: str) -> dict[str, dict[str, str]]:
    """in-toto's artifact format: path -> {algorithm: hex digest}."""
    if not isinstance(value, dict):
        raise MalformedEvidence(f"link {field} is not an object")
    for path, digests in value.items():
        if not isinstance(digests, dict) or not all(
                isinstance(alg, str) and isinstance(d, str) and _HEX.fullmatch(d) for alg, d in digests.items()):
            raise MalformedEvidence(f"link {field} {str(path)[:60]!r}: digests must map algorithm names to hex")
    return value


def _products(signed: Any) -> dict[str, dict[str, str]]:
    """The products of a signed in-toto link, checked against in-toto's link format.

    The checks are those of in-toto's ``Link`` model (field types, artifact
    hash dicts of hex digests), done directly: ``Link.validate`` finds its
    validators with ``inspect.getmembers``, which also evaluates the link's
    ``signable_bytes`` and so canonicalizes every document a second time,
    almost half of the cost of a verification.  in-toto-rs writes ``null``
    for empty fields (rebuilderd): null is read as empty.
    """
    if not isinstance(signed, dict):
        raise MalformedEvidence("signed payload is not an object")
    if signed.get("_type") != "link":
        raise UnsupportedEvidence(f"signed payload is a {str(signed.get('_type'))[:40]!r}, not an in-toto link")
    for field, kind in _LINK_FIELDS.items():
        value = signed.get(field)
        if value is not None and not isinstance(value, kind):
            raise MalformedEvidence(f"not a valid in-toto link: {field} must be a {kind.__name__}")
    _hash_dicts(signed.get("materials") or {}, "materials")
    products = _hash_dicts(signed.get("products") or {}, "products")
    return {str(path): dict(digests) for path, digests in products.items()}


def verify_document(raw: bytes, keyset: KeySet, source: str = "") -> SignedLink:
    """Check one fetched document against one rebuilder's keys.

    Raises an EvidenceError subclass for anything that is not a link validly
    signed by one of this rebuilder's keys.
    """
    doc = _json(raw)
    if not isinstance(doc, dict):
        raise MalformedEvidence("document is not a JSON object")
    if "payloadType" in doc or "payload" in doc:
        try:
            from securesystemslib.dsse import Envelope

            payload_type = doc.get("payloadType")
            if payload_type != IN_TOTO_PAYLOAD_TYPE:
                raise UnsupportedEvidence(f"DSSE payload type {str(payload_type)[:60]!r} is not in-toto")
            sigs = _signatures(doc.get("signatures"))
            envelope = Envelope(base64.b64decode(doc["payload"], validate=True), payload_type, {})
        except (KeyError, TypeError, binascii.Error, ValueError) as e:
            raise MalformedEvidence(f"broken DSSE envelope: {e}") from None
        trusted = _verify_dsse(sigs, envelope.pae(), keyset)
        signed = _json(envelope.payload)
    elif "signed" in doc:
        signed, sigs, data = _metablock_parts(doc)
        trusted = _verify(sigs, data, keyset)
    else:
        raise MalformedEvidence("neither an in-toto metablock ('signed') nor a DSSE envelope ('payload')")
    products = _products(signed)
    step = signed.get("name") if isinstance(signed.get("name"), str) else ""
    return SignedLink(keyset.rebuilder, trusted.identity, products, step, source)


def _verify_dsse(sigs: list[Signature], pae: bytes, keyset: KeySet) -> TrustedKey:
    # DSSE signatures are base64; securesystemslib keys take hex.
    converted = []
    for s in sigs:
        try:
            raw = base64.b64decode(s.signature, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEvidence("DSSE signature is not base64") from None
        converted.append(Signature(s.keyid, raw.hex(), {}))
    return _verify(converted, pae, keyset)
