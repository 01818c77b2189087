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
* DSSE envelopes with payload type ``application/vnd.in-toto+json``
  holding a link, or an in-toto Statement (v0.1 or v1) whose predicate
  type the policy accepts for the rebuilder (:func:`_subjects`);
* rebuilderd's in-toto-rs links: ``environment`` null, two signatures whose
  keyids are computed differently, and ed25519 keys published as PEM with a
  NULL algorithm parameter.  Keyids are hints only: when no keyid matches,
  every key of the rebuilder is tried.

The signed payload is checked against in-toto's link format (see :func:`_products`).

Keys (:func:`key_file_to_crypto`) come as PEM or DER SubjectPublicKeyInfo,
securesystemslib JSON key files, raw 32-byte ed25519 keys, OpenPGP keyrings,
or the ``keys`` table of an in-toto layout.  RSA keys are tried with PSS and
PKCS#1 v1.5, ECDSA keys with the curve's hash and with SHA-256 (as
in-toto-java and cosign sign): the document does not say which.
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
from .policy import DEFAULT_PREDICATE_TYPES

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1")
#: Signatures on one rebuilder document.  Each one may cost a check with every
#: key of the rebuilder (keyids are only hints), over the whole signed payload:
#: a document carrying more is refused as malformed before any is tried.
#: rebuilderd signs with 2, in-toto tools with 1.
MAX_SIGNATURES = 8
#: Signatures on a halt document: K of N developers sign one, and a brake
#: must not be refused because many agreed.
MAX_HALT_SIGNATURES = 16
MAX_SUBJECTS = 10000  # a rebuild has a few binaries; a whole build tree has thousands at most
#: witness names a step's output files ``https://witness.dev/attestations/product/v0.1/file:<path>``.
_WITNESS_PRODUCT = re.compile(r"https://witness\.dev/attestations/product/v[0-9.]+/file:(.+)", re.S)
_STRONG = ("sha256", "sha512")
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
    #: The scheme variant of each key that verified last: tried first next
    #: time, since a rebuilder signs every document the same way (a P-521
    #: key that signs with SHA-256 then costs one check, not two).
    preferred: dict[str, TrustedKey] = field(default_factory=dict, repr=False, compare=False)

    def by_keyid(self, keyid: str) -> list[TrustedKey]:
        k = keyid.lower()
        return [t for t in self.keys if t.key.keyid.lower() == k]

    def in_order(self, keys: list[TrustedKey]) -> list[TrustedKey]:
        """*keys* with the variants that verified last first (order only changes speed)."""
        if not self.preferred:
            return keys
        return sorted(keys, key=lambda t: self.preferred.get(t.identity) is not t)

    def describe(self) -> list[str]:
        """One line per key (not per scheme variant), with the keyid that
        rebuilders put in their signatures, for ``check-config``."""
        lines: dict[tuple[str, str], str] = {}
        for t in self.keys:
            what = "OpenPGP" if t.key.scheme.startswith("pgp+") else t.key.keytype
            note = f" ({t.expired})" if t.expired else ""
            lines.setdefault((t.identity, t.key.keyid), f"{t.label}: {what}, keyid {t.key.keyid}{note}")
        return list(lines.values())


# --------------------------------------------------------------------------
# Loading keys (once per process: this is the expensive part for OpenPGP)


def _ed25519_from_der(der: bytes) -> Any:
    """An ed25519 SPKI that cryptography refuses: rebuilderd writes it with a
    NULL algorithm parameter.  The raw key is the last 32 bytes of the DER."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if _ED25519_OID in der[:16] and len(der) in (44, 46) and der[-35:-32] == b"\x03\x21\x00":
        return Ed25519PublicKey.from_public_bytes(der[-32:])
    raise ValueError("unsupported or corrupt public key")


def _pem_to_crypto(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem)
    except (ValueError, TypeError):
        pass
    text = pem.decode("ascii", "replace")
    if "-----BEGIN PUBLIC KEY-----" not in text:
        raise ValueError("not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')")
    body = text.split("-----BEGIN PUBLIC KEY-----", 1)[1].split("-----END PUBLIC KEY-----", 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("PEM body is not base64") from None
    return _ed25519_from_der(der)


def _der_to_crypto(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        return load_der_public_key(der)
    except (ValueError, TypeError):
        return _ed25519_from_der(der)


def _sslib_dict_to_crypto(key: Any, what: str) -> Any:
    """The public key of a securesystemslib / in-toto key dict
    (``{"keytype", "scheme", "keyval": {"public": ...}}``): ed25519 keys are
    hex, rsa and ecdsa keys PEM text."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, dict) or not isinstance(key.get("keyval"), dict):
        raise ValueError(f"{what} is not a securesystemslib key (no 'keyval')")
    keytype, public = key.get("keytype", key.get("type")), key["keyval"].get("public")
    if keytype == "ed25519" and isinstance(public, str):
        try:
            raw = bytes.fromhex(public)
        except ValueError:
            raise ValueError(f"{what}: ed25519 'public' is not hex") from None
        if len(raw) != 32:
            raise ValueError(f"{what}: ed25519 'public' is {len(raw)} bytes, not 32")
        return Ed25519PublicKey.from_public_bytes(raw)
    if keytype in ("rsa", "ecdsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384") and isinstance(public, str):
        if str(key.get("scheme", key.get("method", ""))).startswith("pgp+"):
            raise ValueError(f"{what} is an OpenPGP key: give its fingerprint in gpg_keys and a keyring")
        return _pem_to_crypto(public.encode("utf-8"))
    if isinstance(public, dict):
        raise ValueError(f"{what} is an OpenPGP key: give its fingerprint in gpg_keys and a keyring")
    raise ValueError(f"{what}: unsupported key type {str(keytype)[:40]!r} (ed25519, ecdsa or rsa)")


def _published_keyid(key: dict) -> str:
    """The keyid in-toto gives a key dict: sha256 of its canonical JSON
    without the private part and without the keyid itself."""
    public = {k: v for k, v in key.items() if k != "keyid"}
    public["keyval"] = {"public": key["keyval"]["public"]}
    return hashlib.sha256(encode_canonical(public).encode("utf-8")).hexdigest()


def key_file_to_crypto(data: bytes) -> tuple[Any, str, str | None]:
    """(cryptography public key, encoding name, published keyid or None) of a key file.

    Read are PEM SubjectPublicKeyInfo (also rebuilderd's ed25519 with a NULL
    parameter), DER SubjectPublicKeyInfo, a securesystemslib JSON key file
    (how in-toto publishes ed25519 keys) and a raw 32-byte ed25519 key.
    """
    head = data.lstrip()[:64]
    if len(data) == 32:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(data), "raw ed25519", None
    if head.startswith(b"-----BEGIN PGP"):
        raise ValueError("an OpenPGP key block: give its fingerprint in gpg_keys and the file as gpg_keyring")
    if head.startswith(b"-----"):
        return _pem_to_crypto(data), "PEM", None
    if head.startswith(b"{"):
        try:
            key = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"not a JSON key file: {e}") from None
        crypto_key = _sslib_dict_to_crypto(key, "JSON key")
        keyid = key.get("keyid") if isinstance(key.get("keyid"), str) else _published_keyid(key)
        return crypto_key, "securesystemslib JSON", keyid.lower()
    if head.startswith(b"\x30"):
        return _der_to_crypto(data), "DER", None
    if head.startswith(b"ssh-"):
        raise ValueError("an OpenSSH key: convert it to PEM (ssh-keygen -e -m PKCS8 -f FILE)")
    raise ValueError("not a public key (PEM, DER, securesystemslib JSON or raw 32-byte ed25519)")


class _EcdsaSha256Key(SSlibKey):
    """An ECDSA key on P-384 or P-521 whose signatures hash with SHA-256.

    securesystemslib ties each curve to its own hash (P-384/SHA-384,
    P-521/SHA-512), but in-toto-java and cosign sign SHA-256 on every curve.
    This variant verifies exactly that with cryptography, nothing else.
    """

    def verify_signature(self, signature: Signature, data: bytes) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
        from cryptography.hazmat.primitives.hashes import SHA256
        from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError

        if signature.keyid != self.keyid:
            raise VerificationError(f"keyid mismatch {signature.keyid} != {self.keyid}")
        try:
            self._crypto_key().verify(bytes.fromhex(signature.signature), data, ECDSA(SHA256()))
        except InvalidSignature as e:
            raise UnverifiedSignatureError("ECDSA/SHA-256 signature does not verify") from e


def _sslib_keys(crypto_key: Any, keyid: str | None = None) -> list[SSlibKey]:
    """securesystemslib keys for a cryptography key, one per plausible scheme.

    RSA links exist with both PSS (in-toto's default) and PKCS#1 v1.5
    signatures, and ECDSA ones with the curve's own hash and with SHA-256;
    the document does not say which, so each is tried.  All variants of one
    key share its keyid, the first variant's unless the key file gave one.
    """
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    if isinstance(crypto_key, RSAPublicKey):
        first = SSlibKey.from_crypto(crypto_key, keyid, "rsassa-pss-sha256")
        return [first, SSlibKey.from_crypto(crypto_key, first.keyid, "rsa-pkcs1v15-sha256")]
    first = SSlibKey.from_crypto(crypto_key, keyid)
    keys = [first]
    if isinstance(crypto_key, EllipticCurvePublicKey) and not isinstance(crypto_key.curve, SECP256R1):
        keys.append(_EcdsaSha256Key(first.keyid, first.keytype, first.scheme, dict(first.keyval)))
    return keys


def _trusted(crypto_key: Any, label: str, keyid: str | None = None) -> list[TrustedKey]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    identity = "spki:" + hashlib.sha256(
        crypto_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    return [TrustedKey(k, identity, label) for k in _sslib_keys(crypto_key, keyid)]


def load_key_files(paths: Iterable[Path], where: str, policy_path: Path) -> list[TrustedKey]:
    """The keys of ``keys = [...]``, in any encoding :func:`key_file_to_crypto` reads."""
    out: list[TrustedKey] = []
    for path in paths:
        try:
            crypto_key, encoding, keyid = key_file_to_crypto(path.read_bytes())
            out.extend(_trusted(crypto_key, f"{path} ({encoding})", keyid))
        except (OSError, ValueError) as e:
            raise ConfigError(policy_path, f"{where}.keys", f"cannot load key file {path}: {e}") from None
    return out


def load_layout_keys(specs: Iterable[Any], where: str, policy_path: Path) -> list[TrustedKey]:
    """Keys out of in-toto layouts (``layout_keys``), by keyid.

    Only the layout's ``keys`` table is read: its signatures, steps and
    expiry are not verified and mean nothing here; the admin names the
    keyids to trust, exactly as a root layout's ``pubkeys`` would.  Each
    key must hash to the keyid it is listed under (in-toto's keyid: sha256
    of its canonical JSON), so a layout whose key was swapped is refused.
    """
    out: list[TrustedKey] = []
    for spec in specs:
        key = f"{where}.layout_keys"
        try:
            doc = json.loads(spec.layout.read_bytes())
            if isinstance(doc, dict) and "payload" in doc:
                doc = json.loads(base64.b64decode(doc["payload"], validate=True))
            elif isinstance(doc, dict) and "signed" in doc:
                doc = doc["signed"]
            keys = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(keys, dict):
                raise ValueError("no 'keys' table (not an in-toto layout)")
        except (OSError, ValueError, RecursionError, binascii.Error) as e:
            raise ConfigError(policy_path, key, f"cannot read layout {spec.layout}: {e}") from None
        by_id = {str(k).lower(): v for k, v in keys.items()}
        for keyid in spec.keyids:
            if keyid not in by_id:
                raise ConfigError(policy_path, key, f"layout {spec.layout} has no key {keyid} "
                                  f"(it has {', '.join(sorted(by_id)) or 'none'})")
            try:
                crypto_key = _sslib_dict_to_crypto(by_id[keyid], f"key {keyid[:16]} of {spec.layout}")
                actual = _published_keyid(by_id[keyid])
            except (ValueError, TypeError) as e:
                raise ConfigError(policy_path, key, str(e)) from None
            if actual != keyid:  # a keyid is a hash of its key: a layout that lies about it was altered
                raise ConfigError(policy_path, key, f"layout {spec.layout} lists under keyid {keyid} a key whose "
                                  f"keyid is {actual}; the layout was altered, or the keyid is wrong")
            out.extend(_trusted(crypto_key, f"{spec.layout} key {keyid}", keyid))
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
    keys = load_key_files(rebuilder.keys, where, policy_path)
    keys += load_layout_keys(rebuilder.layout_keys, where, policy_path)
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


def _signatures(entries: Any, limit: int = MAX_SIGNATURES) -> list[Signature]:
    if not isinstance(entries, list):
        raise MalformedEvidence("'signatures' is not a list")
    if not entries:
        raise UnsignedEvidence("document carries no signature")
    if len(entries) > limit:
        raise MalformedEvidence(f"document carries {len(entries)} signatures (max {limit})")
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
        for trusted in keyset.in_order(candidates or keyset.keys):
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
            keyset.preferred[trusted.identity] = trusted
            return trusted
    if expired is not None:
        raise BadSignature(f"signed by {expired.expired} key {expired.label}")
    ids = ", ".join(s.keyid[:16] for s in signatures)
    if known_id:
        raise BadSignature(f"signature by a trusted key of {keyset.rebuilder} does not verify (keyid {ids})")
    raise UnknownKey(f"no signature verifies with {keyset.rebuilder}'s keys (signed by keyid {ids})")


def parse_metablock(raw: bytes, max_signatures: int = MAX_HALT_SIGNATURES) -> tuple[Any, list[Signature], bytes]:
    """(signed, signatures, canonical bytes) of a legacy ``{"signed", "signatures"}`` document
    (halt statements and feeds)."""
    doc = _json(raw)
    if not isinstance(doc, dict) or "signed" not in doc:
        raise MalformedEvidence("not a signed document ({'signed': ..., 'signatures': [...]})")
    return _metablock_parts(doc, max_signatures)


def _metablock_parts(doc: dict, max_signatures: int = MAX_SIGNATURES) -> tuple[Any, list[Signature], bytes]:
    """The signatures are read (and counted) first; the signed payload is
    canonicalized once, whatever the number of signatures and keys tried."""
    sigs = _signatures(doc.get("signatures"), max_signatures)
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
    if signed.get("_type") in STATEMENT_TYPES:
        raise UnsupportedEvidence("an in-toto Statement in a legacy metablock (Statements are signed "
                                  "in DSSE envelopes only)")
    if signed.get("_type") != "link":
        raise UnsupportedEvidence(f"signed payload is a {str(signed.get('_type'))[:40]!r}, not an in-toto link")
    for field, kind in _LINK_FIELDS.items():
        value = signed.get(field)
        if value is not None and not isinstance(value, kind):
            raise MalformedEvidence(f"not a valid in-toto link: {field} must be a {kind.__name__}")
    _hash_dicts(signed.get("materials") or {}, "materials")
    products = _hash_dicts(signed.get("products") or {}, "products")
    return {str(path): dict(digests) for path, digests in products.items()}


def _subject_name(name: str) -> str:
    """A subject's file path: known naming schemes reduced to the path they carry."""
    witness = _WITNESS_PRODUCT.fullmatch(name)
    return witness.group(1) if witness else name


def _subjects(statement: dict, predicate_types: Iterable[str]) -> tuple[tuple[str, dict[str, str]], ...]:
    """The (file name, digests) pairs an in-toto Statement (v0.1 or v1) attests.

    Only predicate types the admin accepts for this rebuilder count: a
    build provenance or a link says "I built this and got this digest",
    an SBOM or a scan result that merely lists a file does not.  Subjects
    stay a list: one naming the artifact twice with two digests must be
    judged on both (a conflict), not on whichever came last.
    """
    ptype = statement.get("predicateType")
    if not isinstance(ptype, str) or not ptype:
        raise MalformedEvidence("in-toto Statement without a predicateType")
    if ptype not in predicate_types:
        raise UnsupportedEvidence(f"in-toto Statement with predicate type {ptype[:80]!r}, which the policy "
                                  "does not accept from this rebuilder (its predicate_types)")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise MalformedEvidence("in-toto Statement: 'subject' must be a non-empty list")
    if len(subjects) > MAX_SUBJECTS:
        raise MalformedEvidence(f"in-toto Statement lists {len(subjects)} subjects (max {MAX_SUBJECTS})")
    out = []
    for subject in subjects:
        if not isinstance(subject, dict):
            raise MalformedEvidence("in-toto Statement: a subject is not an object")
        digest = subject.get("digest")
        if not isinstance(digest, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in digest.items()):
            raise MalformedEvidence("in-toto Statement: a subject's digest must map algorithm names to strings")
        for alg, value in digest.items():
            if alg.lower() in _STRONG and not _HEX.fullmatch(value):
                raise MalformedEvidence(f"in-toto Statement: {alg} digest {value[:20]!r} is not hex")
        name = subject.get("name")
        if isinstance(name, str) and name:  # a nameless subject cannot name our file
            out.append((_subject_name(name), dict(digest)))
    return tuple(out)


def verify_document(raw: bytes, keyset: KeySet, source: str = "",
                    predicate_types: Iterable[str] = DEFAULT_PREDICATE_TYPES) -> SignedLink:
    """Check one fetched document against one rebuilder's keys.

    Raises an EvidenceError subclass for anything that is not a link, or an
    in-toto Statement of one of *predicate_types* in a DSSE envelope,
    validly signed by one of this rebuilder's keys.  The signature is
    checked before the payload is interpreted.
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
        if isinstance(signed, dict) and signed.get("_type") in STATEMENT_TYPES:
            subjects = _subjects(signed, predicate_types)
            return SignedLink(keyset.rebuilder, trusted.identity, subjects, signed["predicateType"], source)
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
