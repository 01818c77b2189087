"""The test helpers in tests/support against real files in <shared>/compat
(moved from tests/test_support.py): the in-toto 1.x link of
apt-transport-in-toto and rebuilderd's published links and keys."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
from in_toto.models.link import Link
from in_toto.models.metadata import Metablock
from securesystemslib.signer import Signature

from tests.support import make_link, rebuilderd_public_pem, sign_legacy_gpg, sign_rebuilderd
from tests.support.links import rebuilderd_keyid
from tests.test_support import CONTENT, PKG, gpg_key_for_sslib, raw_rebuilderd_key, rebuilderd_sig_ok


def _compat_bob(compat: Path) -> tuple[dict, dict]:
    """The in-toto 1.x link and Bob's key from the layout that trusts it."""
    apt_compat = compat / "apt-transport-in-toto"
    layout = json.loads((apt_compat / "test.layout").read_text())
    bob = layout["signed"]["keys"]["5863835e5ec8e640fa24410f069edc1d59b58507"]
    return json.loads((apt_compat / "rebuild.5863835e.link").read_text()), bob


def test_compat_in_toto_1_link_verifies_both_ways(compat: Path):
    """The reference: the real in-toto 1.x link verifies through in-toto's
    legacy path as is, and through securesystemslib once renamed to `sig`."""
    link, bob = _compat_bob(compat)
    Metablock.from_dict(copy.deepcopy(link)).verify_signature(bob)
    sig = dict(link["signatures"][0])
    sig["sig"] = sig.pop("signature")
    signable = Link.read(link["signed"]).signable_bytes
    assert sig["keyid"] == bob["keyid"]  # signed by the primary key
    gpg_key_for_sslib(bob).verify_signature(Signature.from_dict(sig), signable)


@pytest.mark.parametrize("encoding", ["sig", "signature"])
@pytest.mark.parametrize("algo", ["ed25519", "rsa2048"])
def test_sign_legacy_gpg_matches_in_toto_1_link(compat: Path, gpg_keys, encoding, algo):
    """sign_legacy_gpg writes what in-toto 1.x wrote (the round trip through
    in-toto and securesystemslib is tests/test_support.py's
    test_sign_legacy_gpg_round_trips)."""
    key = gpg_keys(algo=algo)
    doc = json.loads(sign_legacy_gpg(make_link({PKG: CONTENT}), key, encoding=encoding))
    reference, _bob = _compat_bob(compat)

    # Same layout as the real in-toto 1.x link, field name aside.
    assert list(doc) == list(reference) == ["signatures", "signed"]
    assert set(doc["signed"]) == set(reference["signed"])
    (sig,) = doc["signatures"]
    expected = set(reference["signatures"][0])
    if encoding == "sig":
        expected = expected - {"signature"} | {"sig"}
    assert set(sig) == expected


def test_rebuilderd_keyid_matches_in_toto_rs(compat: Path):
    """Our keyid recipe gives exactly the keyids in the real attestations."""
    rebuilderd_compat = compat / "rebuilderd"
    for pub, link in [
        ("reproducible-archlinux.pub", "filesystem-2025.10.12-1-any.in-toto.link"),
        ("reproduce-debian-net-amd64.pub", "librust-as-slice-dev_0.2.1-1+b2_amd64.in-toto.link"),
    ]:
        public = raw_rebuilderd_key(rebuilderd_compat / pub)
        doc = json.loads((rebuilderd_compat / link).read_text())
        valid = [s for s in doc["signatures"] if rebuilderd_sig_ok(doc, public, s)]
        assert len(valid) == 1
        raw = public.public_bytes_raw()
        assert rebuilderd_keyid(raw) == valid[0]["keyid"]


def test_rebuilderd_compat_invalid_link_fails(compat: Path):
    public = raw_rebuilderd_key(compat / "rebuilderd" / "reproducible-archlinux.pub")
    doc = json.loads(
        (compat / "rebuilderd" / "filesystem-2025.10.12-1-any.INVALID.in-toto.link").read_text()
    )
    assert not any(rebuilderd_sig_ok(doc, public, s) for s in doc["signatures"])


def test_sign_rebuilderd_matches_real_format(compat: Path, tmp_keys, tmp_path):
    """sign_rebuilderd and rebuilderd_public_pem write what rebuilderd
    publishes (the rest of the format and the signatures are
    tests/test_support.py's test_sign_rebuilderd_format_and_signatures)."""
    rebuilderd_compat = compat / "rebuilderd"
    worker, daemon = tmp_keys(), tmp_keys()
    link = make_link({PKG: CONTENT}, name=f"rebuild {PKG}", materials={"x.buildinfo": b"bi"})
    doc = json.loads(sign_rebuilderd(link, worker, daemon_key=daemon))
    real = json.loads(
        (rebuilderd_compat / "librust-as-slice-dev_0.2.1-1+b2_amd64.in-toto.link").read_text()
    )

    # Same key order.
    assert list(doc) == list(real)
    assert list(doc["signed"]) == list(real["signed"])

    # The published PEM: the same DER prefix before the raw 32-byte key.
    pem = rebuilderd_public_pem(daemon, tmp_path / "daemon.pub")
    der = base64.b64decode("".join(pem.read_text().splitlines()[1:-1]))
    real_der = base64.b64decode(
        "".join((rebuilderd_compat / "reproducible-archlinux.pub").read_text().splitlines()[1:-1])
    )
    assert der[:-32] == real_der[:-32] == bytes.fromhex("302c300706032b65700500032100")
