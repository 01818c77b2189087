"""in-toto Statements (v0.1, v1) in DSSE as evidence, and ECDSA as signed in practice.

Every document here is made with fresh keys by securesystemslib's own DSSE
code (tests/support/links.py); the verdicts come from the real rule in
rebuildgate.decide, so a test passes only if a Statement really votes,
conflicts or is refused as the README says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate.decide import Rule, decide
from rebuildgate.errors import BadSignature, MalformedEvidence, UnknownKey, UnsupportedEvidence
from rebuildgate.evidence import MAX_SUBJECTS, KeySet, load_key_files, verify_document
from rebuildgate.model import Artifact, Problem, RebuilderReport
from rebuildgate.policy import DEFAULT_PREDICATE_TYPES
from tests.support.keys import EcdsaSha256Signer, TestKey
from tests.support.links import (
    PREDICATES,
    make_link,
    make_statement,
    sign_dsse,
    sign_legacy,
    sign_statement,
)
from tests.support.policy import RebuilderEntry, write_policy

DEB = "hello_1.0-1_amd64.deb"
CONTENT = b"the real package\n"
SHA = hashlib.sha256(CONTENT).hexdigest()
EVIL = hashlib.sha256(b"backdoored\n").hexdigest()
ART = Artifact(DEB, SHA, name="hello", source="hello", version="1.0-1", arch="amd64")


def keyset(key: TestKey, name: str = "rb") -> KeySet:
    return KeySet(name, load_key_files([key.public_pem], f"rebuilder[0] ({name})", Path("policy.toml")))


def judge(doc: bytes, key: TestKey, artifact: Artifact = ART, **kwargs):
    """The verdict of one rebuilder's document under threshold 1."""
    try:
        reports = [RebuilderReport("rb", (verify_document(doc, keyset(key), "u", **kwargs),))]
    except (MalformedEvidence, UnsupportedEvidence, BadSignature, UnknownKey) as e:
        reports = [RebuilderReport("rb", (), (Problem(e.kind, str(e)),))]
    return decide(artifact, Rule(1), reports)


# --- Statements vote and conflict --------------------------------------------

@pytest.mark.parametrize("version", ["v0.1", "v1"])
@pytest.mark.parametrize("predicate", ["link-v0.3", "slsa-v0.1", "slsa-v0.2", "slsa-v1"])
def test_statement_subject_votes(tmp_keys, version, predicate) -> None:
    key = tmp_keys("ed25519")
    doc = sign_statement(make_statement({DEB: CONTENT}, predicate, version), key.signer)
    link = verify_document(doc, keyset(key), "u")
    assert link.step == PREDICATES[predicate]
    assert dict(link.artifacts())[DEB]["sha256"] == SHA
    v = judge(doc, key)
    assert v.accepted and v.vote_count == 1 and v.conflict_count == 0


@pytest.mark.parametrize("version", ["v0.1", "v1"])
def test_statement_other_digest_is_a_conflict(tmp_keys, version) -> None:
    key = tmp_keys("ed25519")
    doc = sign_statement(make_statement({DEB: {"sha256": EVIL}}, "slsa-v1", version), key.signer)
    v = judge(doc, key)
    assert not v.accepted and v.vote_count == 0 and v.conflict_count == 1
    assert v.conflicts[0].digest == EVIL


def test_subject_name_with_a_path_matches_the_file_name(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    doc = sign_statement(make_statement({f"out/pool/{DEB}": CONTENT}), key.signer)
    assert judge(doc, key).accepted


@pytest.mark.parametrize("path", [DEB, f"dist/{DEB}"])
def test_witness_product_subject_names_the_file(tmp_keys, path) -> None:
    key = tmp_keys("ed25519")
    name = f"https://witness.dev/attestations/product/v0.1/file:{path}"
    doc = sign_statement(make_statement({name: CONTENT}, PREDICATES["slsa-v1"], "v0.1"), key.signer)
    assert judge(doc, key).accepted
    wrong = sign_statement(make_statement({name: {"sha256": EVIL}}, "slsa-v1", "v0.1"), key.signer)
    assert judge(wrong, key).conflict_count == 1


def test_unrelated_subjects_are_ignored(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    doc = sign_statement(make_statement({"hello-doc_1.0-1_all.deb": {"sha256": EVIL}, DEB: CONTENT}), key.signer)
    v = judge(doc, key)
    assert v.accepted and v.conflict_count == 0
    only_other = sign_statement(make_statement({"other.deb": CONTENT}), key.signer)
    v = judge(only_other, key)
    assert not v.accepted and v.missing == ("rb",)


@pytest.mark.parametrize("order", ["good-first", "evil-first"])
def test_subject_listing_the_artifact_twice_with_two_digests_is_a_conflict(tmp_keys, order) -> None:
    key = tmp_keys("ed25519")
    pairs = [(DEB, {"sha256": SHA}), (DEB, {"sha256": EVIL})]
    if order == "evil-first":
        pairs.reverse()
    v = judge(sign_statement(make_statement(pairs), key.signer), key)
    assert not v.accepted and v.vote_count == 0 and v.conflict_count == 1


def test_subject_twice_with_the_same_digest_is_one_vote(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    v = judge(sign_statement(make_statement([(DEB, CONTENT), (f"x/{DEB}", CONTENT)]), key.signer), key)
    assert v.accepted and v.vote_count == 1


def test_subject_with_only_weak_digests_does_not_vote(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    sha1 = hashlib.sha1(CONTENT).hexdigest()
    v = judge(sign_statement(make_statement({DEB: {"sha1": sha1, "md5": hashlib.md5(CONTENT).hexdigest()}}),
                             key.signer), key)
    assert not v.accepted and v.conflict_count == 0
    assert [p.kind for _, p in v.errors] == ["weak-digest"]


def test_sha512_subject_votes_when_the_artifact_has_it(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    sha512 = hashlib.sha512(CONTENT).hexdigest()
    art = Artifact(DEB, SHA, sha512=sha512)
    assert judge(sign_statement(make_statement({DEB: {"sha512": sha512}}), key.signer), key, art).accepted
    bad = sign_statement(make_statement({DEB: {"sha512": "ab" * 64}}), key.signer)
    assert judge(bad, key, art).conflict_count == 1


# --- which predicate types count is the admin's choice ------------------------

def test_predicate_types_outside_the_policy_are_unsupported(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    sbom = sign_statement(make_statement({DEB: CONTENT}, "spdx"), key.signer)
    with pytest.raises(UnsupportedEvidence, match="spdx.dev/Document.*predicate_types"):
        verify_document(sbom, keyset(key))
    assert PREDICATES["spdx"] not in DEFAULT_PREDICATE_TYPES
    v = judge(sbom, key)
    assert not v.accepted and v.conflict_count == 0 and v.errors[0][1].kind == "unsupported"
    # the admin may accept it for a rebuilder ...
    assert judge(sbom, key, predicate_types=[PREDICATES["spdx"]]).accepted
    # ... and narrowing the list refuses the others
    slsa = sign_statement(make_statement({DEB: CONTENT}, "slsa-v1"), key.signer)
    with pytest.raises(UnsupportedEvidence):
        verify_document(slsa, keyset(key), predicate_types=[PREDICATES["link-v0.3"]])


def test_empty_predicate_types_means_links_only(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    with pytest.raises(UnsupportedEvidence):
        verify_document(sign_statement(make_statement({DEB: CONTENT}), key.signer), keyset(key),
                        predicate_types=())
    assert judge(sign_dsse(make_link({DEB: CONTENT}), key.signer), key, predicate_types=()).accepted


def test_a_refused_predicate_never_shows_as_a_conflict(tmp_keys) -> None:
    """A scan result listing another digest for the file is not a rebuild's word."""
    key = tmp_keys("ed25519")
    scan = sign_statement(make_statement({DEB: {"sha256": EVIL}}, "https://example.invalid/scan/v1"), key.signer)
    v = judge(scan, key)
    assert v.conflict_count == 0 and v.errors[0][1].kind == "unsupported"


# --- confusion between links and Statements -----------------------------------

def test_link_payload_with_a_subject_counts_its_products_only(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    link = json.loads(make_link({"other.deb": CONTENT}).signable_bytes)
    link["subject"] = [{"name": DEB, "digest": {"sha256": SHA}}]
    v = judge(sign_statement(link, key.signer), key)
    assert not v.accepted and v.missing == ("rb",)


def test_statement_with_products_counts_its_subjects_only(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({"other.deb": CONTENT})
    statement["products"] = {DEB: {"sha256": SHA}}
    v = judge(sign_statement(statement, key.signer), key)
    assert not v.accepted and v.missing == ("rb",)


def test_statement_in_a_legacy_metablock_is_unsupported(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({DEB: CONTENT})
    signature = key.signer.sign(json.dumps(statement, sort_keys=True, separators=(",", ":")).encode())
    doc = json.dumps({"signed": statement, "signatures": [signature.to_dict()]}).encode()
    with pytest.raises(UnsupportedEvidence, match="Statement in a legacy metablock"):
        verify_document(doc, keyset(key))


@pytest.mark.parametrize("payload_type", ["application/vnd.in-toto.statement+json", "application/json", ""])
def test_other_dsse_payload_types_are_unsupported(tmp_keys, payload_type) -> None:
    key = tmp_keys("ed25519")
    doc = sign_statement(make_statement({DEB: CONTENT}), key.signer, payload_type=payload_type)
    with pytest.raises(UnsupportedEvidence, match="payload type"):
        verify_document(doc, keyset(key))


def test_unknown_statement_version_is_unsupported(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({DEB: CONTENT})
    statement["_type"] = "https://in-toto.io/Statement/v2"
    with pytest.raises(UnsupportedEvidence, match="not an in-toto link"):
        verify_document(sign_statement(statement, key.signer), keyset(key))


# --- hostile Statements ---------------------------------------------------------

def test_statement_signature_is_checked_before_it_counts(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    doc = json.loads(sign_statement(make_statement({DEB: {"sha256": EVIL}}), key.signer))
    statement = json.loads(base64.b64decode(doc["payload"]))
    statement["subject"][0]["digest"]["sha256"] = SHA  # claim the good hash without re-signing
    doc["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(BadSignature):
        verify_document(json.dumps(doc).encode(), keyset(key))
    with pytest.raises(UnknownKey):
        verify_document(sign_statement(make_statement({DEB: CONTENT}), key.signer), keyset(tmp_keys("ed25519")))


def test_oversize_subject_lists_are_malformed(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    many = [(f"f{i}.deb", {"sha256": SHA}) for i in range(MAX_SUBJECTS)]
    assert len(list(verify_document(sign_statement(make_statement(many), key.signer), keyset(key)).artifacts())) \
        == MAX_SUBJECTS
    too_many = many + [(DEB, {"sha256": SHA})]
    with pytest.raises(MalformedEvidence, match="subjects"):
        verify_document(sign_statement(make_statement(too_many), key.signer), keyset(key))


@pytest.mark.parametrize("subject,message", [
    ("not-a-list", "non-empty list"),
    ([], "non-empty list"),
    (["a string"], "not an object"),
    ([{"name": DEB, "digest": "abc"}], "digest"),
    ([{"name": DEB, "digest": {"sha256": 5}}], "digest"),
    ([{"name": DEB, "digest": {"sha256": "not hex!"}}], "not hex"),
    ([{"name": DEB, "digest": {"SHA512": "zz"}}], "not hex"),
])
def test_malformed_subjects(tmp_keys, subject, message) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({DEB: CONTENT})
    statement["subject"] = subject
    with pytest.raises(MalformedEvidence, match=message):
        verify_document(sign_statement(statement, key.signer), keyset(key))


def test_missing_predicate_type_is_malformed(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({DEB: CONTENT})
    del statement["predicateType"]
    with pytest.raises(MalformedEvidence, match="predicateType"):
        verify_document(sign_statement(statement, key.signer), keyset(key))


def test_nameless_subjects_are_skipped(tmp_keys) -> None:
    key = tmp_keys("ed25519")
    statement = make_statement({DEB: CONTENT})
    statement["subject"].insert(0, {"digest": {"sha256": EVIL}})
    assert judge(sign_statement(statement, key.signer), key).accepted


# --- ECDSA: the curve's own hash, and SHA-256 on every curve ----------------------

@pytest.mark.parametrize("kind", ["ecdsa", "ecdsa-p384", "ecdsa-p521"])
@pytest.mark.parametrize("hashing", ["native", "sha256"])
def test_ecdsa_statements_verify_with_native_hash_and_sha256(tmp_keys, kind, hashing) -> None:
    key = tmp_keys(kind)
    signer = key.signer if hashing == "native" else EcdsaSha256Signer(key)
    assert judge(sign_statement(make_statement({DEB: CONTENT}), signer), key).accepted
    assert judge(sign_legacy(make_link({DEB: CONTENT}), signer), key).accepted


@pytest.mark.parametrize("kind", ["ecdsa-p384", "ecdsa-p521"])
def test_ecdsa_other_hashes_are_not_accepted(tmp_keys, kind) -> None:
    """SHA-256 is the one relaxation: a P-521 signature over SHA-384 does not verify."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import Signature

    key = tmp_keys(kind)
    private = load_pem_private_key(key.private_pem.read_bytes(), None)
    other = hashes.SHA384() if kind == "ecdsa-p521" else hashes.SHA512()
    payload = json.dumps(make_statement({DEB: CONTENT})).encode()
    envelope = Envelope(payload, "application/vnd.in-toto+json", {})
    der = private.sign(envelope.pae(), ec.ECDSA(other))
    envelope.signatures[key.keyid] = Signature(key.keyid, der.hex())
    with pytest.raises(BadSignature):
        verify_document(json.dumps(envelope.to_dict()).encode(), keyset(key))


def test_ecdsa_sha256_signature_by_another_key_is_unknown(tmp_keys) -> None:
    mine, theirs = tmp_keys("ecdsa-p521"), tmp_keys("ecdsa-p521")
    doc = sign_statement(make_statement({DEB: CONTENT}), EcdsaSha256Signer(theirs))
    with pytest.raises(UnknownKey):
        verify_document(doc, keyset(mine))


# --- through the command, with the policy's predicate_types -------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_statement_rebuilders_vote_and_policy_narrows(tmp_path, tmp_keys) -> None:
    a, b = tmp_keys("ed25519"), tmp_keys("ecdsa-p521")
    for name, key, signer, predicate in (("a", a, a.signer, "slsa-v1"),
                                         ("b", b, EcdsaSha256Signer(b), "link-v0.3")):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{DEB}.intoto.json").write_bytes(
            sign_statement(make_statement({DEB: CONTENT}, predicate, "v1"), signer))
    args = ("verify", "--json", "--artifact", DEB, "--sha256", SHA)

    def policy(extra_b: dict) -> Path:
        return write_policy(tmp_path / "p.toml", [
            RebuilderEntry("a", f"file://{tmp_path / 'a'}", [a.public_pem], "template",
                           {"url_template": "{url}/{filename}.intoto.json"}),
            RebuilderEntry("b", f"file://{tmp_path / 'b'}", [b.public_pem], "template",
                           {"url_template": "{url}/{filename}.intoto.json", **extra_b})], threshold=2)

    r = _cli(*args, "--policy", str(policy({})))
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["votes"] == ["a", "b"]
    r = _cli(*args, "--policy", str(policy({"predicate_types": [PREDICATES["slsa-v1"]]})))
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["votes"] == ["a"] and [e["kind"] for e in out["errors"]] == ["unsupported"]
    assert "link/v0.3" in out["errors"][0]["message"]
    r = _cli("check-config", "--policy", str(policy({"predicate_types": []})))
    assert r.returncode == 0, r.stderr
    assert "in-toto Statements accepted: none (only links count)" in r.stdout
    assert f"in-toto Statements accepted: {', '.join(DEFAULT_PREDICATE_TYPES)}" in r.stdout


def test_one_keyset_verifies_both_ecdsa_hashes_in_any_order(tmp_keys) -> None:
    """The variant that verified last is tried first; the other still verifies."""
    key = tmp_keys("ecdsa-p521")
    ks = keyset(key)
    native = sign_statement(make_statement({DEB: CONTENT}), key.signer)
    sha256 = sign_statement(make_statement({DEB: CONTENT}), EcdsaSha256Signer(key))
    for doc in (sha256, native, sha256, native):
        assert dict(verify_document(doc, ks).artifacts())[DEB]["sha256"] == SHA
    forged = sign_statement(make_statement({DEB: CONTENT}), EcdsaSha256Signer(tmp_keys("ecdsa-p521")))
    with pytest.raises(UnknownKey):
        verify_document(forged, ks)


# --- decisions where published evidence is ambiguous (README: "What counts as a vote") ---

def test_default_predicate_types_are_build_records() -> None:
    """SLSA v0.1 (in-toto-java) and witness collections are build records too,
    so they count by default beside link v0.3 and SLSA v0.2 / v1."""
    assert set(DEFAULT_PREDICATE_TYPES) == {
        PREDICATES["link-v0.3"], PREDICATES["slsa-v0.1"], PREDICATES["slsa-v0.2"], PREDICATES["slsa-v1"],
        "https://witness.testifysec.com/attestation-collection/v0.1"}


def test_only_witness_product_names_are_unwrapped(tmp_keys) -> None:
    """A witness collection also names files in other attestors' schemes (an
    SBOM's own file, git objects): those say nothing about a built product."""
    key = tmp_keys("ed25519")
    sbom_name = f"https://cyclonedx.org/bom/file:{DEB}"
    doc = sign_statement(make_statement({sbom_name: CONTENT},
                                        "https://witness.testifysec.com/attestation-collection/v0.1", "v0.1"),
                         key.signer)
    v = judge(doc, key)
    assert not v.accepted and v.missing == ("rb",)
