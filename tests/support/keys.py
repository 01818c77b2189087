"""Signing keys for tests: securesystemslib keys and throw-away OpenPGP keys.

Keys are generated fresh (never checked in), so a test can never pass by
accident against a key someone else also holds. Every key is also written to
disk, because the code under test loads trust anchors from files, the way an
administrator would configure them.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gnupg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib._gpg.common import get_pubkey_bundle
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Signature, Signer, SSlibKey

KINDS = ("ed25519", "ecdsa", "ecdsa-p384", "ecdsa-p521", "rsa")
#: How a public key may be written to a file (see `write_public_key`).
ENCODINGS = ("pem", "der", "json", "raw")

# A unix socket path is limited to 108 bytes; gpg puts `S.gpg-agent.browser`
# (the longest of its socket names) into the homedir. Stay well below.
_MAX_GNUPGHOME = 80


@dataclass
class TestKey:
    """A securesystemslib key pair, with both halves also written as PEM."""

    __test__ = False  # a dataclass named Test*: keep pytest from collecting it

    kind: str
    signer: CryptoSigner
    public_pem: Path  # SubjectPublicKeyInfo, what an admin would configure
    keyid: str  # securesystemslib's default keyid for this key
    private_pem: Path  # PKCS#8, unencrypted

    @property
    def public_key(self) -> SSlibKey:
        """The securesystemslib public key (for `Key.verify_signature`)."""
        return self.signer.public_key

    def key_dict(self) -> dict[str, Any]:
        """The public key as in-toto's legacy API wants it (dict + `keyid`),
        e.g. for `Metablock.verify_signature`."""
        return {"keyid": self.keyid, **self.signer.public_key.to_dict()}


def make_key(directory: Path, kind: str = "ed25519", name: str = "key") -> TestKey:
    """Generate a key of `kind` (ed25519, ecdsa = P-256, ecdsa-p384,
    ecdsa-p521 with the curve's own hash, rsa = 2048 bit PSS)
    and write `{name}.pem` (private) and `{name}.pub.pem` (public) to
    `directory`.

    RSA is 2048 bits, not securesystemslib's default 3072, only to keep key
    generation fast in tests.
    """
    if kind == "ed25519":
        signer = CryptoSigner.generate_ed25519()
    elif kind == "ecdsa":
        signer = CryptoSigner.generate_ecdsa()
    elif kind in ("ecdsa-p384", "ecdsa-p521"):
        curve = ec.SECP384R1() if kind == "ecdsa-p384" else ec.SECP521R1()
        private = ec.generate_private_key(curve)
        signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
    elif kind == "rsa":
        signer = CryptoSigner.generate_rsa(size=2048)
    else:
        raise ValueError(f"unknown key kind {kind!r}, expected one of {KINDS}")

    directory.mkdir(parents=True, exist_ok=True)
    private_pem = directory / f"{name}.pem"
    public_pem = directory / f"{name}.pub.pem"
    private_pem.write_bytes(signer.private_bytes)
    public = load_pem_private_key(signer.private_bytes, None).public_key()
    public_pem.write_bytes(
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return TestKey(
        kind=kind,
        signer=signer,
        public_pem=public_pem,
        keyid=signer.public_key.keyid,
        private_pem=private_pem,
    )


def in_toto_key_dict(key: TestKey) -> dict[str, Any]:
    """The public key as in-toto (securesystemslib 0.x) publishes it in JSON
    key files and layouts: keytype, scheme, keyid_hash_algorithms, keyval
    (ed25519 hex, others PEM)."""
    public = key.signer.public_key
    return {
        "keytype": public.keytype,
        "scheme": public.scheme,
        "keyid_hash_algorithms": ["sha256", "sha512"],
        "keyval": {"public": public.keyval["public"]},
    }


def published_keyid(key: TestKey) -> str:
    """The keyid in-toto gives `in_toto_key_dict(key)`: sha256 of its canonical JSON."""
    return hashlib.sha256(encode_canonical(in_toto_key_dict(key)).encode("utf-8")).hexdigest()


def write_public_key(key: TestKey, path: Path, encoding: str) -> Path:
    """Write `key`'s public half as `encoding` (one of ENCODINGS): PEM or DER
    SubjectPublicKeyInfo, a securesystemslib JSON key file, or the raw 32
    bytes of an ed25519 key. Returns `path`."""
    public = load_pem_public_key(key.public_pem.read_bytes())
    if encoding == "pem":
        data = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    elif encoding == "der":
        data = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    elif encoding == "json":
        data = json.dumps(in_toto_key_dict(key)).encode("utf-8")
    elif encoding == "raw":
        data = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        raise ValueError(f"unknown encoding {encoding!r}, expected one of {ENCODINGS}")
    path = Path(path)
    path.write_bytes(data)
    return path


def write_layout(path: Path, keys: dict[str, dict[str, Any]], wrap: str = "metablock") -> Path:
    """An (unsigned) in-toto root layout whose `keys` table holds `keys`
    (keyid -> key dict), as a metablock or a DSSE envelope. Only the keys are
    meant to be read: the layout's signatures are deliberately absent."""
    layout = {"_type": "layout", "expires": "2030-01-01T00:00:00Z", "readme": "",
              "keys": keys, "steps": [], "inspect": []}
    if wrap == "metablock":
        doc: dict[str, Any] = {"signed": layout, "signatures": []}
    elif wrap == "dsse":
        doc = {"payloadType": "application/vnd.in-toto+json", "signatures": [],
               "payload": base64.b64encode(json.dumps(layout).encode()).decode()}
    else:
        raise ValueError(f"unknown wrap {wrap!r}")
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1))
    return path


class EcdsaSha256Signer(Signer):
    """Signs with an ECDSA key of any curve over SHA-256, as in-toto-java and
    cosign do (securesystemslib would hash P-384 with SHA-384, P-521 with
    SHA-512)."""

    def __init__(self, key: TestKey) -> None:
        self._key = key
        self._private = load_pem_private_key(key.private_pem.read_bytes(), None)

    @property
    def public_key(self) -> SSlibKey:
        return self._key.public_key

    def sign(self, payload: bytes) -> Signature:
        der = self._private.sign(payload, ec.ECDSA(hashes.SHA256()))
        return Signature(self._key.keyid, der.hex())

    @classmethod
    def from_priv_key_uri(cls, *args: Any, **kwargs: Any) -> "EcdsaSha256Signer":
        raise NotImplementedError


@dataclass
class GpgKey:
    """An OpenPGP key without passphrase in its own GnuPG home directory."""

    fingerprint: str  # 40 hex digits, upper case, as gpg prints it
    homedir: Path  # GNUPGHOME holding the secret key
    public_asc: Path  # ASCII-armored `gpg --export --armor`
    keyring: Path  # binary `gpg --export` (usable as a keyring file)
    algo: str = "ed25519"
    _owned_homedir: bool = field(default=False, repr=False)

    @property
    def keyid(self) -> str:
        """The keyid in-toto / securesystemslib use: the lower-case
        fingerprint."""
        return self.fingerprint.lower()

    def legacy_key_dict(self) -> dict[str, Any]:
        """The public key parsed in-process from the binary export, in the
        legacy dict form (`type`, `method`, `hashes`, `keyval`, `keyid`) that
        `in_toto.models.metadata.Metablock.verify_signature` and
        `securesystemslib._gpg.functions.verify_signature` take."""
        return get_pubkey_bundle(self.keyring.read_bytes(), self.keyid)

    def cleanup(self) -> None:
        """Stop this home's gpg-agent (and remove the home if we made it
        outside the caller's directory). Safe to call twice."""
        if self.homedir.exists():
            subprocess.run(
                ["gpgconf", "--homedir", str(self.homedir), "--kill", "all"],
                check=False,
                capture_output=True,
                timeout=10,
            )
        if self._owned_homedir:
            shutil.rmtree(self.homedir, ignore_errors=True)


def _new_gnupghome(directory: Path) -> tuple[Path, bool]:
    """A fresh, private GNUPGHOME: under `directory` when the path is short
    enough for gpg's sockets, otherwise under /tmp (then we own it)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / "gnupg-XXXXXXXX"
    if len(str(probe.resolve())) <= _MAX_GNUPGHOME:
        return Path(tempfile.mkdtemp(prefix="gnupg-", dir=directory)), False
    return Path(tempfile.mkdtemp(prefix="rg-gpg-", dir="/tmp")), True


def make_gpg_key(directory: Path, uid: str, algo: str = "ed25519") -> GpgKey:
    """Generate an OpenPGP signing key (`algo` "ed25519" or "rsa2048"; no
    passphrase, no expiry) in a new GNUPGHOME and export its public half to
    `directory` as `{fpr}.asc` and `{fpr}.gpg`.

    The caller must call `cleanup()` (the conftest fixtures do); an atexit
    hook does it anyway so no gpg-agent outlives the test run.
    """
    if algo not in ("ed25519", "rsa2048"):
        raise ValueError(f"unsupported gpg algo {algo!r}")
    homedir, owned = _new_gnupghome(directory)
    homedir.chmod(0o700)
    subprocess.run(
        [
            "gpg", "--homedir", str(homedir), "--batch", "--quiet",
            "--passphrase", "", "--pinentry-mode", "loopback",
            "--quick-gen-key", uid, algo, "sign", "never",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    gpg = gnupg.GPG(gnupghome=str(homedir))
    keys = gpg.list_keys(secret=True)
    if len(keys) != 1:
        raise RuntimeError(f"expected one secret key in {homedir}, got {len(keys)}")
    fingerprint = keys[0]["fingerprint"].upper()

    public_asc = directory / f"{fingerprint}.asc"
    keyring = directory / f"{fingerprint}.gpg"
    public_asc.write_text(gpg.export_keys(fingerprint, armor=True))
    keyring.write_bytes(gpg.export_keys(fingerprint, armor=False))

    key = GpgKey(
        fingerprint=fingerprint,
        homedir=homedir,
        public_asc=public_asc,
        keyring=keyring,
        algo=algo,
        _owned_homedir=owned,
    )
    atexit.register(key.cleanup)
    return key
