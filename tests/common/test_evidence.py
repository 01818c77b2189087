"""Signature checks in every supported format (the real-world files: tests/conformance)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebuildgate.errors import (BadSignature, ConfigError, EvidenceError, MalformedEvidence, UnknownKey,
                                UnsignedEvidence, UnsupportedEvidence)
from rebuildgate.evidence import KeySet, load_gpg_keys, load_key_files, verify_document

from tests.support.links import (make_link, rebuilderd_public_pem, sign_dsse, sign_legacy, sign_legacy_gpg,
                                 sign_rebuilderd, tamper)

DEB = "hello_1.0-1_all.deb"
CONTENT = b"the package"


def keyset(name: str, *pems: Path) -> KeySet:
    return KeySet(name, load_key_files(pems, f"rebuilder[0] ({name})", Path("policy.toml")))


def gpg_keyset(name: str, fingerprint: str, keyring: Path) -> KeySet:
    return KeySet(name, load_gpg_keys([fingerprint], keyring, "rebuilder[0]", Path("policy.toml")))


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
@pytest.mark.parametrize("fmt", ["legacy", "dsse"])
def test_valid_links_in_each_key_type_and_format(tmp_keys, kind, fmt) -> None:
    key = tmp_keys(kind)
    link = make_link({DEB: CONTENT})
    doc = sign_legacy(link, key.signer) if fmt == "legacy" else sign_dsse(link, key.signer)
    signed = verify_document(doc, keyset("rb", key.public_pem), "http://x/metadata")
    assert signed.rebuilder == "rb" and signed.source == "http://x/metadata"
    assert signed.products[DEB]["sha256"] == link.products[DEB]["sha256"]
    assert signed.keyid.startswith("spki:")


@pytest.mark.parametrize("fmt", ["legacy", "dsse", "rebuilderd"])
def test_tampered_documents_do_not_verify(tmp_keys, fmt, tmp_path) -> None:
    key = tmp_keys("ed25519")
    link = make_link({DEB: CONTENT})
    doc = {"legacy": lambda: sign_legacy(link, key.signer), "dsse": lambda: sign_dsse(link, key.signer),
           "rebuilderd": lambda: sign_rebuilderd(link, key)}[fmt]()
    pem = rebuilderd_public_pem(key, tmp_path / "k.pem") if fmt == "rebuilderd" else key.public_pem
    verify_document(doc, keyset("rb", pem))
    with pytest.raises((BadSignature, UnknownKey)):
        verify_document(tamper(doc), keyset("rb", pem))


def test_known_keyid_with_bad_signature_is_bad_signature(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    with pytest.raises(BadSignature) as e:
        verify_document(tamper(sign_legacy(make_link({DEB: CONTENT}), key.signer)), keyset("rb", key.public_pem))
    assert e.value.kind == "bad-signature"


def test_other_rebuilders_key_is_unknown(tmp_keys) -> None:
    mine, theirs = tmp_keys("ed25519"), tmp_keys("ed25519")
    doc = sign_legacy(make_link({DEB: CONTENT}), theirs.signer)
    with pytest.raises(UnknownKey) as e:
        verify_document(doc, keyset("rb", mine.public_pem))
    assert "rb's keys" in str(e.value)


def test_one_good_signature_among_strangers_is_enough(tmp_keys) -> None:
    mine, other = tmp_keys("ed25519"), tmp_keys("ecdsa")
    doc = sign_legacy(make_link({DEB: CONTENT}), other.signer, mine.signer)
    assert verify_document(doc, keyset("rb", mine.public_pem)).rebuilder == "rb"


def test_rebuilderd_format_from_fixture(tmp_keys, tmp_path) -> None:
    worker, daemon = tmp_keys("ed25519"), tmp_keys("ed25519")
    doc = sign_rebuilderd(make_link({DEB: CONTENT}), worker, daemon)
    assert json.loads(doc)["signed"]["environment"] is None
    pem = rebuilderd_public_pem(daemon, tmp_path / "daemon.pub")
    assert verify_document(doc, keyset("rb", pem)).products[DEB]


@pytest.mark.parametrize("encoding", ["sig", "signature"])
def test_openpgp_links_in_both_encodings(gpg_key, encoding) -> None:
    doc = sign_legacy_gpg(make_link({DEB: CONTENT}), gpg_key, encoding)
    assert ('"signature"' in doc.decode()) is (encoding == "signature")
    for keyring in (gpg_key.keyring, gpg_key.public_asc):
        signed = verify_document(doc, gpg_keyset("rb", gpg_key.fingerprint, keyring))
        assert signed.keyid == f"openpgp:{gpg_key.fingerprint}"
    with pytest.raises(BadSignature):
        verify_document(tamper(doc), gpg_keyset("rb", gpg_key.fingerprint, gpg_key.keyring))


def test_expired_openpgp_key_is_reported_not_counted(tmp_path) -> None:
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback"]
    subprocess.run(gpg + ["--quick-gen-key", "Old <old@test>", "ed25519", "sign", "seconds=1"], check=True,
                   timeout=60)
    fpr = subprocess.run(gpg + ["--with-colons", "--list-keys"], capture_output=True, text=True, check=True
                         ).stdout.split("fpr:::::::::")[1].split(":")[0]
    keyring = tmp_path / "old.gpg"
    keyring.write_bytes(subprocess.run(gpg + ["--export", fpr], capture_output=True, check=True).stdout)
    try:
        from securesystemslib.signer import GPGSigner
        _, pub = GPGSigner.import_(fpr.lower(), str(home))
        from in_toto.models.metadata import Metablock
        mb = Metablock(signed=make_link({DEB: CONTENT}))
        mb.create_signature(GPGSigner(pub, str(home)))
        doc = str(mb).encode()
        import time
        time.sleep(2)
        with pytest.raises(BadSignature) as e:
            verify_document(doc, gpg_keyset("rb", fpr, keyring))
        assert "expired" in str(e.value)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, timeout=10)


def test_keyring_problems_are_config_errors(tmp_path, gpg_key) -> None:
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError) as e:
        gpg_keyset("rb", gpg_key.fingerprint, empty)
    assert "holds no OpenPGP public keys" in str(e.value) and "gpg_keyring" in (e.value.key or "")
    with pytest.raises(ConfigError) as e:
        gpg_keyset("rb", "A" * 40, gpg_key.keyring)
    assert "is not in" in str(e.value) and (e.value.key or "").endswith("gpg_keys")


@pytest.mark.parametrize("content", [b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                     b"not a key", b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"])
def test_broken_pem_files_are_config_errors(tmp_path, content) -> None:
    p = tmp_path / "k.pem"
    p.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        keyset("rb", p)
    assert str(p) in str(e.value) and (e.value.key or "").endswith(".keys")


# --- malformed input -----------------------------------------------------------

@pytest.mark.parametrize("raw,error", [
    (b"", MalformedEvidence),
    (b"\xff\xfe garbage", MalformedEvidence),
    (b"[1, 2]", MalformedEvidence),
    (b'{"hello": 1}', MalformedEvidence),
    (b'{"signed": {"_type": "link"}, "signatures": []}', UnsignedEvidence),
    (b'{"signed": {"_type": "link"}}', MalformedEvidence),
    (b'{"signed": {"_type": "link"}, "signatures": "x"}', MalformedEvidence),
    (b'{"signed": {"_type": "link"}, "signatures": [{"sig": "00"}]}', MalformedEvidence),
    (b'{"signed": {"_type": "link", "x": 1.5}, "signatures": [{"keyid": "a", "sig": "00"}]}', MalformedEvidence),
    (b"[" * 100000 + b"]" * 100000, MalformedEvidence),
    (b'{"payloadType": "text/plain", "payload": "", "signatures": []}', UnsupportedEvidence),
    (b'{"payloadType": "application/vnd.in-toto+json", "payload": "!!", "signatures": [{"keyid":"a","sig":"AA=="}]}',
     MalformedEvidence),
])
def test_malformed_documents(tmp_keys, raw, error) -> None:
    with pytest.raises(error):
        verify_document(raw, keyset("rb", tmp_keys("ed25519").public_pem))


def test_signed_layout_is_not_a_link(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    from securesystemslib.formats import encode_canonical
    signed = {"_type": "layout", "steps": []}
    sig = key.signer.sign(encode_canonical(signed).encode())
    doc = json.dumps({"signed": signed, "signatures": [sig.to_dict()]}).encode()
    with pytest.raises(UnsupportedEvidence):
        verify_document(doc, keyset("rb", key.public_pem))


def test_validly_signed_but_malformed_link_is_malformed(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    from securesystemslib.formats import encode_canonical
    signed = {"_type": "link", "name": "rebuild", "products": {DEB: "not-a-dict"}, "materials": {},
              "byproducts": {}, "command": [], "environment": {}}
    sig = key.signer.sign(encode_canonical(signed).encode())
    doc = json.dumps({"signed": signed, "signatures": [sig.to_dict()]}).encode()
    with pytest.raises(MalformedEvidence):
        verify_document(doc, keyset("rb", key.public_pem))


def test_too_many_signatures_refused(tmp_keys) -> None:
    doc = {"signed": {"_type": "link"}, "signatures": [{"keyid": str(i), "sig": "00"} for i in range(100)]}
    with pytest.raises(MalformedEvidence):
        verify_document(json.dumps(doc).encode(), keyset("rb", tmp_keys("ed25519").public_pem))


@pytest.mark.parametrize("fmt", ["legacy", "dsse"])
def test_at_most_eight_signatures_are_tried(tmp_keys, fmt) -> None:
    """Each signature may cost a check with every key over the whole payload:
    a rebuilder's document with more than 8 (rebuilderd signs with 2) is
    refused before any is tried; with 8, the valid one may come last."""
    key = tmp_keys("ed25519")
    link = make_link({DEB: CONTENT})
    doc = json.loads(sign_legacy(link, key.signer) if fmt == "legacy" else sign_dsse(link, key.signer))
    valid = doc["signatures"][0]
    bogus = {"keyid": "ab" * 32, "sig": "00" * 64 if fmt == "legacy" else base64.b64encode(b"\0" * 64).decode()}
    ks = keyset("rb", key.public_pem)
    doc["signatures"] = [bogus] * 7 + [valid]
    assert verify_document(json.dumps(doc).encode(), ks).products[DEB]
    doc["signatures"] = [bogus] * 8 + [valid]
    with pytest.raises(MalformedEvidence) as e:
        verify_document(json.dumps(doc).encode(), ks)
    assert "9 signatures (max 8)" in str(e.value)


def test_the_payload_is_canonicalized_once_however_many_signatures_and_keys(tmp_keys, monkeypatch) -> None:
    import rebuildgate.evidence as evidence

    keys = [tmp_keys("ed25519"), tmp_keys("rsa"), tmp_keys("ecdsa")]
    signed = json.loads(sign_legacy(make_link({DEB: CONTENT}), keys[0].signer))["signed"]
    doc = {"signed": signed, "signatures": [{"keyid": f"{i:064x}", "sig": "00" * 64} for i in range(8)]}
    calls: list[int] = []
    original = evidence.encode_canonical
    monkeypatch.setattr(evidence, "encode_canonical", lambda obj: calls.append(1) or original(obj))
    with pytest.raises(UnknownKey):  # 8 signatures x 4 key variants tried, each over the same bytes
        verify_document(json.dumps(doc).encode(), keyset("rb", *(k.public_pem for k in keys)))
    assert len(calls) == 1


def test_halt_documents_may_carry_more_signatures_than_evidence(tmp_keys) -> None:
    """K of N developers sign a halt: the brake is not refused because many agreed."""
    from rebuildgate.evidence import MAX_HALT_SIGNATURES, parse_metablock

    doc = {"signed": {"_type": "halt"}, "signatures": [{"keyid": f"{i:064x}", "sig": "00"} for i in range(12)]}
    _signed, sigs, _data = parse_metablock(json.dumps(doc).encode())
    assert len(sigs) == 12 <= MAX_HALT_SIGNATURES
    doc["signatures"] *= 2
    with pytest.raises(MalformedEvidence):
        parse_metablock(json.dumps(doc).encode())


def test_dsse_with_wrong_signature_encoding(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    env = json.loads(sign_dsse(make_link({DEB: CONTENT}), key.signer))
    env["signatures"][0]["sig"] = "%%%"
    with pytest.raises(MalformedEvidence):
        verify_document(json.dumps(env).encode(), keyset("rb", key.public_pem))
    env = json.loads(sign_dsse(make_link({DEB: CONTENT}), key.signer))
    env["payload"] = base64.b64encode(b'{"_type": "link"}').decode()
    with pytest.raises(EvidenceError):
        verify_document(json.dumps(env).encode(), keyset("rb", key.public_pem))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(["signed", "signatures", "payload", "payloadType", "x"]),
                           _json_values, max_size=4))
def test_fuzz_documents_never_crash_and_never_verify(tmp_keys, doc) -> None:
    ks = _FUZZ_KEYS.setdefault("ks", keyset("rb", tmp_keys("ed25519").public_pem))
    with pytest.raises(EvidenceError):
        verify_document(json.dumps(doc).encode(), ks)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes_never_crash(raw) -> None:
    with pytest.raises(EvidenceError):
        verify_document(raw, KeySet("rb", []))


_FUZZ_KEYS: dict[str, KeySet] = {}

