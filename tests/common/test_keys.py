"""Public keys in every encoding rebuilders publish them, and keys taken out of in-toto layouts.

Each key is made fresh, written in the encoding under test, loaded through
the policy as an admin would configure it, and must then verify a document
that key signed (and nothing another key signed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate.errors import ConfigError, UnknownKey
from rebuildgate.evidence import KeySet, load_keyset, verify_document
from rebuildgate.policy import load_policy
from tests.support.keys import in_toto_key_dict, published_keyid, write_layout, write_public_key
from tests.support.links import make_link, make_statement, sign_legacy, sign_statement
from tests.support.policy import RebuilderEntry, write_policy

DEB = "hello_1.0-1_all.deb"
CONTENT = b"package\n"

ALL = [(kind, enc) for kind in ("ed25519", "ecdsa", "ecdsa-p384", "ecdsa-p521", "rsa")
       for enc in ("pem", "der", "json")] + [("ed25519", "raw")]


def policy_keyset(tmp_path: Path, **rebuilder: object) -> KeySet:
    p = load_policy(write_policy(tmp_path / "p.toml", [{"name": "rb", "url": "https://rb.invalid", **rebuilder}]))
    return load_keyset(p.rebuilders[0], 0, p.path)


@pytest.mark.parametrize("kind,encoding", ALL)
def test_every_key_encoding_verifies_its_own_signatures(tmp_path, tmp_keys, kind, encoding) -> None:
    key, other = tmp_keys(kind), tmp_keys(kind)
    path = write_public_key(key, tmp_path / f"k.{encoding}", encoding)
    ks = policy_keyset(tmp_path, keys=[str(path)])
    assert verify_document(sign_legacy(make_link({DEB: CONTENT}), key.signer), ks).products[DEB]
    assert dict(verify_document(sign_statement(make_statement({DEB: CONTENT}), key.signer), ks).artifacts())[DEB]
    with pytest.raises(UnknownKey):
        verify_document(sign_legacy(make_link({DEB: CONTENT}), other.signer), ks)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p521", "rsa"])
def test_one_key_in_two_encodings_is_one_identity(tmp_path, tmp_keys, kind) -> None:
    key = tmp_keys(kind)
    encodings = ("pem", "der", "json", "raw") if kind == "ed25519" else ("pem", "der", "json")
    identities = {policy_keyset(tmp_path, keys=[str(write_public_key(key, tmp_path / f"k.{e}", e))]).keys[0].identity
                  for e in encodings}
    assert len(identities) == 1


def test_json_key_keeps_the_keyid_in_toto_publishes(tmp_path, tmp_keys) -> None:
    key = tmp_keys("ed25519")
    ks = policy_keyset(tmp_path, keys=[str(write_public_key(key, tmp_path / "k.pub", "json"))])
    assert {t.key.keyid for t in ks.keys} == {published_keyid(key)}
    # a key file that names its keyid keeps it
    with_id = dict(in_toto_key_dict(key), keyid="ab" * 32)
    (tmp_path / "id.pub").write_text(json.dumps(with_id))
    assert {t.key.keyid for t in policy_keyset(tmp_path, keys=[str(tmp_path / "id.pub")]).keys} == {"ab" * 32}


@pytest.mark.parametrize("content,message", [
    (b"\x01" * 31, "not a public key"),
    (b"\x30\x03\x02\x01\x00", "unsupported or corrupt"),
    (b'{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "zz"}}', "not hex"),
    (b'{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "abcd"}}', "2 bytes, not 32"),
    (b'{"keytype": "rsa", "scheme": "pgp+rsa-pkcsv1.5", "keyval": {"public": {"n": "1", "e": "1"}}}', "OpenPGP"),
    (b'{"keytype": "dsa", "keyval": {"public": "x"}}', "unsupported key type"),
    (b'{"keyval": 1}', "not a securesystemslib key"),
    (b"{not json", "not a JSON key file"),
    (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n", "gpg_keys"),
    (b"ssh-ed25519 AAAAC3Nza test", "OpenSSH"),
    (b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n", "not base64"),
])
def test_unusable_key_files_are_policy_errors(tmp_path, content, message) -> None:
    (tmp_path / "bad.key").write_bytes(content)
    with pytest.raises(ConfigError, match=message) as e:
        policy_keyset(tmp_path, keys=[str(tmp_path / "bad.key")])
    assert "rebuilder[0] (rb).keys" in str(e.value) and "bad.key" in str(e.value)


# --- layout_keys ------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", ["metablock", "dsse"])
def test_layout_keys_trust_only_the_named_keyids(tmp_path, tmp_keys, wrap) -> None:
    ed, rsa, other = tmp_keys("ed25519"), tmp_keys("rsa"), tmp_keys("ecdsa")
    keys = {published_keyid(k): {**in_toto_key_dict(k), "keyid": published_keyid(k)} for k in (ed, rsa, other)}
    layout = write_layout(tmp_path / "root.layout", keys, wrap)
    ks = policy_keyset(tmp_path, layout_keys={"layout": str(layout),
                                              "keyids": [published_keyid(ed), published_keyid(rsa).upper()]})
    for key in (ed, rsa):
        assert verify_document(sign_legacy(make_link({DEB: CONTENT}), key.signer), ks).products[DEB]
    with pytest.raises(UnknownKey):
        verify_document(sign_legacy(make_link({DEB: CONTENT}), other.signer), ks)
    assert {t.key.keyid for t in ks.keys} == {published_keyid(ed), published_keyid(rsa)}


def test_layout_keys_as_a_list_of_tables_and_beside_key_files(tmp_path, tmp_keys) -> None:
    a, b, c = tmp_keys("ed25519"), tmp_keys("ed25519"), tmp_keys("ecdsa-p384")
    la = write_layout(tmp_path / "a.layout", {published_keyid(a): in_toto_key_dict(a)})
    lb = write_layout(tmp_path / "b.layout", {published_keyid(b): in_toto_key_dict(b)}, "dsse")
    ks = policy_keyset(tmp_path, keys=[str(c.public_pem)], layout_keys=[
        {"layout": str(la), "keyids": [published_keyid(a)]}, {"layout": str(lb), "keyids": [published_keyid(b)]}])
    for key in (a, b, c):
        assert verify_document(sign_legacy(make_link({DEB: CONTENT}), key.signer), ks).rebuilder == "rb"


@pytest.mark.parametrize("layout_keys,message", [
    ({"layout": "missing.layout", "keyids": ["ab"]}, "does not exist"),
    ({"layout": "{layout}"}, "keyids: is required"),
    ({"layout": "{layout}", "keyids": ["not-hex"]}, "not a hexadecimal keyid"),
    ({"layout": "{layout}", "keyids": ["ab"], "verify": True}, "verify: unknown key"),
    ({"keyids": ["ab"]}, "layout: is required"),
    ("root.layout", "must be a table or a list"),
])
def test_layout_keys_policy_errors(tmp_path, tmp_keys, layout_keys, message) -> None:
    layout = write_layout(tmp_path / "root.layout", {})
    if isinstance(layout_keys, dict) and layout_keys.get("layout") == "{layout}":
        layout_keys = {**layout_keys, "layout": str(layout)}
    with pytest.raises(ConfigError, match=message) as e:
        load_policy(write_policy(tmp_path / "p.toml", [{"name": "rb", "url": "https://rb.invalid",
                                                         "layout_keys": layout_keys}]))
    assert "rebuilder[0] (rb).layout_keys" in str(e.value)


def test_layout_keys_load_errors(tmp_path, tmp_keys) -> None:
    key = tmp_keys("ed25519")
    layout = write_layout(tmp_path / "root.layout", {published_keyid(key): in_toto_key_dict(key)})
    with pytest.raises(ConfigError, match=f"has no key {'cd' * 32} \\(it has {published_keyid(key)}\\)"):
        policy_keyset(tmp_path, layout_keys={"layout": str(layout), "keyids": ["cd" * 32]})
    (tmp_path / "junk.layout").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="no 'keys' table"):
        policy_keyset(tmp_path, layout_keys={"layout": str(tmp_path / "junk.layout"), "keyids": ["ab"]})
    gpg_layout = write_layout(tmp_path / "gpg.layout", {"ab" * 20: {
        "type": "rsa", "method": "pgp+rsa-pkcsv1.5", "keyid": "ab" * 20, "hashes": ["pgp+SHA2"],
        "keyval": {"private": "", "public": {"e": "010001", "n": "00"}}}})
    with pytest.raises(ConfigError, match="OpenPGP key"):
        policy_keyset(tmp_path, layout_keys={"layout": str(gpg_layout), "keyids": ["ab" * 20]})


def test_check_config_shows_each_key_with_its_published_keyid(tmp_path, tmp_keys) -> None:
    ed, p521 = tmp_keys("ed25519"), tmp_keys("ecdsa-p521")
    layout = write_layout(tmp_path / "root.layout", {published_keyid(p521): in_toto_key_dict(p521)})
    json_key = write_public_key(ed, tmp_path / "ed.pub", "json")
    p = write_policy(tmp_path / "p.toml", [RebuilderEntry("rb", "https://rb.invalid", [json_key], extra={
        "layout_keys": {"layout": str(layout), "keyids": [published_keyid(p521)]}})])
    r = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "check-config", "--policy", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"key {json_key} (securesystemslib JSON): ed25519, keyid {published_keyid(ed)}" in r.stdout
    assert f"key {layout} key {published_keyid(p521)}: ecdsa, keyid {published_keyid(p521)}" in r.stdout
    # one line per key, not one per signature scheme tried
    assert r.stdout.count(f"keyid {published_keyid(p521)}") == 1


def test_a_layout_key_swapped_under_a_published_keyid_is_refused(tmp_path, tmp_keys) -> None:
    honest, evil = tmp_keys("ed25519"), tmp_keys("ed25519")
    layout = write_layout(tmp_path / "root.layout", {published_keyid(honest): in_toto_key_dict(evil)})
    with pytest.raises(ConfigError, match=f"lists under keyid {published_keyid(honest)} a key whose keyid is "
                                          f"{published_keyid(evil)}"):
        policy_keyset(tmp_path, layout_keys={"layout": str(layout), "keyids": [published_keyid(honest)]})
