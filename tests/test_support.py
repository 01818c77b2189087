"""Proof that the shared fixtures in tests/support do what they claim.

Every other test trusts these helpers to produce what real rebuilders and
package managers produce, so each one is checked here against the libraries
and tools that read the real thing (in-toto, securesystemslib, cryptography,
dpkg-deb, rpm).  Their checks against the real files in ../shared/compat
are conformance tests (tests/conformance/test_compat_support.py).
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.link import Link
from in_toto.models.metadata import Envelope, Metablock, Metadata
from securesystemslib.exceptions import FormatError, UnverifiedSignatureError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, Signer, SSlibKey

from tests.support import (
    Fault,
    RebuilderServer,
    TestKey,
    build_deb,
    build_rpm,
    make_apt_repo,
    make_gpg_key,
    make_link,
    make_rpm_repo,
    publish_package_rebuilder,
    rebuilderd_public_pem,
    sha256_file,
    sign_dsse,
    sign_legacy,
    sign_legacy_gpg,
    sign_rebuilderd,
    tamper,
)
from tests.support.links import rebuilderd_keyid

PKG = "hello_1.0-1_all.deb"
CONTENT = b"the package bytes\n"


# -- helpers: verification the way a verifier would do it -------------------


def verify_legacy(doc: bytes, key: TestKey) -> Link:
    """Parse legacy metadata with in-toto and verify one signature with both
    in-toto's and securesystemslib's API."""
    metablock = Metablock.from_dict(json.loads(doc))
    metablock.verify_signature(key.key_dict())
    (sig,) = [s for s in metablock.signatures if s["keyid"] == key.keyid]
    key.public_key.verify_signature(
        Signature.from_dict(dict(sig)), metablock.signed.signable_bytes
    )
    return metablock.signed


def gpg_key_for_sslib(legacy: dict) -> Key:
    """securesystemslib's GPGKey from the legacy dict parsed out of a binary
    `gpg --export` (Key.from_dict dispatches on keytype/scheme)."""
    return Key.from_dict(
        legacy["keyid"],
        {"keytype": legacy["type"], "scheme": legacy["method"], "keyval": legacy["keyval"]},
    )


def raw_rebuilderd_key(pem_path: Path) -> Ed25519PublicKey:
    """What a verifier must do with a rebuilderd PEM: take the DER's last 32
    bytes as the raw ed25519 key."""
    body = "".join(
        line for line in pem_path.read_text().splitlines() if not line.startswith("-----")
    )
    der = base64.b64decode(body)
    return Ed25519PublicKey.from_public_bytes(der[-32:])


def rebuilderd_sig_ok(doc: dict, public: Ed25519PublicKey, sig: dict) -> bool:
    try:
        public.verify(bytes.fromhex(sig["sig"]), encode_canonical(doc["signed"]).encode())
        return True
    except InvalidSignature:
        return False


# -- keys -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_make_key_signs_and_verifies(tmp_keys, kind):
    key = tmp_keys(kind, name=f"k-{kind}")
    assert key.kind == kind
    sig = key.signer.sign(b"payload")
    key.public_key.verify_signature(sig, b"payload")
    with pytest.raises(UnverifiedSignatureError):
        key.public_key.verify_signature(sig, b"other payload")

    # The PEM files are what an admin configures: they give the same key.
    from_pem = SSlibKey.from_crypto(load_pem_public_key(key.public_pem.read_bytes()))
    assert from_pem.keyid == key.keyid == key.signer.public_key.keyid
    assert re.fullmatch(r"[0-9a-f]{64}", key.keyid)
    signer = Signer.from_priv_key_uri(f"file2:{key.private_pem}", key.public_key)
    key.public_key.verify_signature(signer.sign(b"x"), b"x")


def test_make_key_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError):
        from tests.support import make_key

        make_key(tmp_path, "dsa")


def test_tmp_keys_are_distinct(tmp_keys):
    a, b = tmp_keys(), tmp_keys()
    assert a.keyid != b.keyid and a.public_pem != b.public_pem


def test_gpg_key_files(gpg_key):
    assert re.fullmatch(r"[0-9A-F]{40}", gpg_key.fingerprint)
    assert gpg_key.public_asc.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # The binary export parses in-process into the key that signs.
    legacy = gpg_key.legacy_key_dict()
    assert legacy["keyid"] == gpg_key.fingerprint.lower()
    assert legacy["method"] == "pgp+eddsa-ed25519"
    # gpg itself reads the keyring file.
    listing = subprocess.run(
        ["gpg", "--homedir", str(gpg_key.homedir), "--no-default-keyring",
         "--keyring", str(gpg_key.keyring), "--with-colons", "--list-keys"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert f"fpr:::::::::{gpg_key.fingerprint}:" in listing
    # Short enough for gpg's sockets.
    assert len(str(gpg_key.homedir / "S.gpg-agent.browser")) < 108


def _live_agents(homedir: Path) -> list[int]:
    """gpg-agents serving homedir that are still running (not zombies)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"gpg-agent") and state != "Z":
            if str(homedir).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_gpg_cleanup_stops_agent(tmp_path):
    key = make_gpg_key(tmp_path, "Short Lived <short@rebuildgate.invalid>")
    sign_legacy_gpg(make_link({PKG: CONTENT}), key)  # needs the agent
    assert (key.homedir / "S.gpg-agent").exists()
    key.cleanup()
    assert not (key.homedir / "S.gpg-agent").exists()
    deadline = time.monotonic() + 3
    while _live_agents(key.homedir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_agents(key.homedir) == []
    key.cleanup()  # idempotent


def test_gpg_long_directory_gets_short_home(tmp_path):
    deep = tmp_path / ("d" * 90)
    key = make_gpg_key(deep, "Deep <deep@rebuildgate.invalid>")
    try:
        assert len(str(key.homedir)) <= 80
        assert key.keyring.parent == deep
        sign_legacy_gpg(make_link({PKG: CONTENT}), key)
    finally:
        key.cleanup()
    assert not key.homedir.exists()


# -- links ------------------------------------------------------------------


def test_make_link_digests():
    link = make_link(
        {PKG: CONTENT, "md5only.deb": {"md5": "00" * 16}},
        materials={"src.dsc": b"source"},
    )
    assert link.name == "rebuild"
    assert link.products[PKG] == {
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "sha512": hashlib.sha512(CONTENT).hexdigest(),
    }
    assert link.products["md5only.deb"] == {"md5": "00" * 16}
    assert link.materials["src.dsc"]["sha256"] == hashlib.sha256(b"source").hexdigest()
    assert make_link({}, name="other").name == "other"


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_sign_legacy_verifies(tmp_keys, kind):
    key = tmp_keys(kind)
    link = make_link({PKG: CONTENT})
    doc = sign_legacy(link, key.signer)
    signed = verify_legacy(doc, key)
    assert signed.products == link.products
    assert isinstance(Metadata.from_dict(json.loads(doc)), Metablock)

    bad = tamper(doc)
    with pytest.raises(SignatureVerificationError):
        Metablock.from_dict(json.loads(bad)).verify_signature(key.key_dict())


def test_sign_legacy_several_signers(tmp_keys):
    a, b = tmp_keys(), tmp_keys("ecdsa")
    doc = sign_legacy(make_link({PKG: CONTENT}), a.signer, b.signer)
    assert [s["keyid"] for s in json.loads(doc)["signatures"]] == [a.keyid, b.keyid]
    verify_legacy(doc, a)
    verify_legacy(doc, b)


def test_sign_legacy_wrong_key_fails(tmp_keys):
    a, b = tmp_keys(), tmp_keys()
    doc = sign_legacy(make_link({PKG: CONTENT}), a.signer)
    with pytest.raises(SignatureVerificationError):
        Metablock.from_dict(json.loads(doc)).verify_signature(b.key_dict())


@pytest.mark.parametrize("encoding", ["sig", "signature"])
@pytest.mark.parametrize("algo", ["ed25519", "rsa2048"])
def test_sign_legacy_gpg_round_trips(gpg_keys, encoding, algo):
    key = gpg_keys(algo=algo)
    link = make_link({PKG: CONTENT})
    doc = json.loads(sign_legacy_gpg(link, key, encoding=encoding))

    # Legacy metadata, one signature.  (That its fields are the real in-toto
    # 1.x link's is checked in tests/conformance/test_compat_support.py.)
    assert list(doc) == ["signatures", "signed"]
    (sig,) = doc["signatures"]
    assert sig["keyid"] == key.keyid
    assert re.fullmatch(r"[0-9a-f]+", sig[encoding])

    # Verify in-process with the key parsed from the binary export.
    legacy = key.legacy_key_dict()
    sslib_key = gpg_key_for_sslib(legacy)
    metablock = Metablock.from_dict(copy.deepcopy(doc))
    if encoding == "signature":  # in-toto's legacy GPG path takes the legacy dict
        verification_key = legacy
    else:  # `sig` goes through securesystemslib's GPGKey: needs keytype/scheme
        sslib_key.verify_signature(Signature.from_dict(dict(sig)), link.signable_bytes)
        verification_key = {"keyid": key.keyid, **sslib_key.to_dict()}
        with pytest.raises(ValueError):  # trap: the legacy dict is refused here
            metablock.verify_signature(legacy)
    metablock.verify_signature(verification_key)

    # Converted to the other encoding it still verifies (same signature data).
    other = dict(sig)
    if encoding == "signature":
        other["sig"] = other.pop("signature")
        sslib_key.verify_signature(Signature.from_dict(other), link.signable_bytes)
    else:
        other["signature"] = other.pop("sig")
        Metablock(signed=link, signatures=[other]).verify_signature(legacy)

    bad = Metablock.from_dict(json.loads(tamper(json.dumps(doc, indent=1).encode())))
    with pytest.raises(SignatureVerificationError):
        bad.verify_signature(verification_key)


def test_sign_legacy_gpg_rejects_unknown_encoding(gpg_key):
    with pytest.raises(ValueError):
        sign_legacy_gpg(make_link({PKG: CONTENT}), gpg_key, encoding="armor")


def test_sign_dsse_verifies(tmp_keys):
    a, b = tmp_keys(), tmp_keys("ecdsa")
    link = make_link({PKG: CONTENT})
    doc = sign_dsse(link, a.signer, b.signer)
    data = json.loads(doc)
    assert data["payloadType"] == "application/vnd.in-toto+json"
    assert len(data["signatures"]) == 2

    envelope = Metadata.from_dict(json.loads(doc))
    assert isinstance(envelope, Envelope)
    assert set(envelope.verify([a.public_key, b.public_key], threshold=2)) == {a.keyid, b.keyid}
    envelope.verify_signature(a.key_dict())
    assert envelope.get_payload().products == link.products

    bad = Envelope.from_dict(json.loads(tamper(doc)))
    assert bad.get_payload().products[PKG]["sha256"] != link.products[PKG]["sha256"]
    with pytest.raises(SignatureVerificationError):
        bad.verify_signature(a.key_dict())


def test_sign_rebuilderd_format_and_signatures(tmp_keys, tmp_path):
    """rebuilderd's format (the key order and the PEM prefix are compared with
    real files in tests/conformance/test_compat_support.py)."""
    worker, daemon = tmp_keys(), tmp_keys()
    link = make_link({PKG: CONTENT}, name=f"rebuild {PKG}", materials={"x.buildinfo": b"bi"})
    raw_doc = sign_rebuilderd(link, worker, daemon_key=daemon)
    doc = json.loads(raw_doc)

    # Compact, null environment, two {"keyid", "sig"}.
    assert raw_doc == json.dumps(doc, separators=(",", ":")).encode()
    assert doc["signed"]["environment"] is None
    assert [list(s) for s in doc["signatures"]] == [["keyid", "sig"]] * 2
    keyids = [s["keyid"] for s in doc["signatures"]]
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keyids)
    assert keyids[0] != worker.keyid and keyids[1] != daemon.keyid  # not sslib's

    # in-toto's model refuses the null environment: verifiers must not use it.
    with pytest.raises(FormatError):
        Link.read(doc["signed"])

    # The published PEM is refused by cryptography, its last 32 bytes work.
    pem = rebuilderd_public_pem(daemon, tmp_path / "daemon.pub")
    with pytest.raises(ValueError):
        load_pem_public_key(pem.read_bytes())
    der = base64.b64decode("".join(pem.read_text().splitlines()[1:-1]))
    assert der[:-32] == bytes.fromhex("302c300706032b65700500032100")
    daemon_public = raw_rebuilderd_key(pem)
    worker_public = raw_rebuilderd_key(rebuilderd_public_pem(worker, tmp_path / "w.pub"))
    assert rebuilderd_sig_ok(doc, daemon_public, doc["signatures"][1])
    assert rebuilderd_sig_ok(doc, worker_public, doc["signatures"][0])
    assert not rebuilderd_sig_ok(doc, daemon_public, doc["signatures"][0])
    assert rebuilderd_keyid(daemon_public.public_bytes_raw()) == keyids[1]

    # Tampering keeps the format and breaks both signatures.
    bad_raw = tamper(raw_doc)
    bad = json.loads(bad_raw)
    assert bad_raw == json.dumps(bad, separators=(",", ":")).encode()
    assert bad["signed"]["products"][PKG]["sha256"] != doc["signed"]["products"][PKG]["sha256"]
    assert not rebuilderd_sig_ok(bad, daemon_public, bad["signatures"][1])
    assert not rebuilderd_sig_ok(bad, worker_public, bad["signatures"][0])


def test_sign_rebuilderd_single_signature_and_ed25519_only(tmp_keys):
    key = tmp_keys()
    doc = json.loads(sign_rebuilderd(make_link({PKG: CONTENT}), key))
    assert len(doc["signatures"]) == 1
    with pytest.raises(ValueError):
        sign_rebuilderd(make_link({PKG: CONTENT}), tmp_keys("ecdsa"))


def test_tamper_sets_chosen_digest(tmp_keys):
    key = tmp_keys()
    evil = {"sha256": "ab" * 32}
    doc = tamper(sign_legacy(make_link({PKG: CONTENT, "other": b"o"}), key.signer), PKG, evil)
    products = json.loads(doc)["signed"]["products"]
    assert products[PKG] == evil
    assert products["other"] == make_link({"other": b"o"}).products["other"]


# -- packages ---------------------------------------------------------------


def _deb_field(deb: Path, field: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_build_deb_fields_and_reproducible(tmp_path):
    kwargs = dict(name="hello", version="2:1.0-1", source="hello-src (1.0-0)",
                  payload=b"payload\n", depends="libc6")
    a = build_deb(tmp_path / "a", **kwargs)
    b = build_deb(tmp_path / "b", **kwargs)
    assert a.name == "hello_1.0-1_all.deb"
    assert a.read_bytes() == b.read_bytes()
    assert _deb_field(a, "Package") == "hello"
    assert _deb_field(a, "Version") == "2:1.0-1"
    assert _deb_field(a, "Source") == "hello-src (1.0-0)"
    assert _deb_field(a, "Architecture") == "all"
    assert _deb_field(a, "Depends") == "libc6"

    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(a)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as tf:
        member = tf.getmember("./usr/share/rebuildgate-test/hello")
        assert tf.extractfile(member).read() == b"payload\n"
        assert (member.uname, member.mtime) == ("root", 1700000000)

    other = build_deb(tmp_path / "c", "hello", "1.0-1", arch="amd64", payload=b"other\n")
    assert other.name == "hello_1.0-1_amd64.deb"
    assert _deb_field(other, "Source") == ""
    assert sha256_file(other) != sha256_file(a)


def _rpm_query(rpm: Path) -> list[str]:
    out = subprocess.run(
        ["rpm", "-qp", "--qf",
         "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}|%{SOURCERPM}|%{ARCH}|[%{REQUIRENAME},]",
         str(rpm)],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split("|")


def test_build_rpm_headers_and_reproducible(tmp_path):
    kwargs = dict(name="hello-bin", version="1.0", release="3", epoch=2,
                  source_name="hello", payload=b"payload\n", requires="bash")
    a = build_rpm(tmp_path / "a", **kwargs)
    b = build_rpm(tmp_path / "b", **kwargs)
    assert a.name == "hello-bin-1.0-3.noarch.rpm"
    assert a.read_bytes() == b.read_bytes()  # rpm 4.18 manages byte-identical
    name, epoch, version, release, srpm, arch, reqs = _rpm_query(a)
    assert (name, epoch, version, release, arch) == ("hello-bin", "2", "1.0", "3", "noarch")
    assert srpm == "hello-1.0-3.src.rpm"
    assert "bash" in reqs.split(",")

    plain = build_rpm(tmp_path / "c", "plain", "2.0")
    name, epoch, version, release, srpm, arch, reqs = _rpm_query(plain)
    assert (name, epoch, version, release, srpm) == ("plain", "(none)", "2.0", "1", "plain-2.0-1.src.rpm")
    files = subprocess.run(["rpm", "-qpl", str(plain)], capture_output=True, text=True, check=True)
    assert files.stdout.split() == ["/usr/share/rebuildgate-test/plain"]


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_file(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_make_apt_repo(tmp_path):
    debs = [build_deb(tmp_path / "debs", n, "1.0-1") for n in ("one", "two")]
    repo = make_apt_repo(tmp_path / "repo", debs)
    packages = (repo / "Packages").read_text()
    for deb in debs:
        assert f"Filename: ./{deb.name}" in packages
        assert f"SHA256: {sha256_file(deb)}" in packages
        assert (repo / deb.name).read_bytes() == deb.read_bytes()
    assert gzip.decompress((repo / "Packages.gz").read_bytes()).decode() == packages
    release = (repo / "Release").read_text()
    assert f" {sha256_file(repo / 'Packages')} " in release


def test_make_rpm_repo(tmp_path):
    rpms = [build_rpm(tmp_path / "rpms", "one", "1.0"), build_rpm(tmp_path / "rpms", "two", "1.0")]
    repo = make_rpm_repo(tmp_path / "repo", rpms)
    repomd = (repo / "repodata" / "repomd.xml").read_text()
    primary_href = re.search(r'href="(repodata/[^"]*primary\.xml\.gz)"', repomd).group(1)
    primary = gzip.decompress((repo / primary_href).read_bytes()).decode()
    for rpm in rpms:
        assert f'href="{rpm.name}"' in primary
        assert sha256_file(rpm) in primary


# -- server -----------------------------------------------------------------


@pytest.fixture
def served(rebuilder_server, tmp_path) -> RebuilderServer:
    root = tmp_path / "root"
    (root / "sources" / "hello").mkdir(parents=True)
    (root / "sources" / "hello" / "file").write_bytes(b"content\n")
    (root / "other").write_bytes(b"other\n")
    return rebuilder_server(root)


def test_server_serves_and_logs(served):
    r = requests.get(f"{served.url}/sources/hello/file", timeout=2)
    assert (r.status_code, r.content) == (200, b"content\n")
    assert requests.get(f"{served.url}/missing", timeout=2).status_code == 404
    assert requests.get(f"{served.url}/sources/hello", timeout=2).status_code == 404  # dir
    head = requests.head(f"{served.url}/other", timeout=2)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "6", b"")
    assert served.requests == ["/sources/hello/file", "/missing", "/sources/hello", "/other"]
    assert served.url == f"http://127.0.0.1:{served.port}"


def test_server_request_log_is_thread_safe(served):
    def fetch(i):
        with requests.Session() as s:
            for j in range(10):
                s.get(f"{served.url}/other?{i}-{j}", timeout=5)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(served.requests) == sorted(f"/other?{i}-{j}" for i in range(8) for j in range(10))


def test_server_latency(served):
    served.latency = 0.3
    started = time.monotonic()
    assert requests.get(f"{served.url}/other", timeout=2).status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{served.url}/other", timeout=(1, 0.1))


@pytest.mark.parametrize("code", [404, 500, 503])
def test_fault_status(served, code):
    served.fault = Fault.status(code)
    assert requests.get(f"{served.url}/other", timeout=2).status_code == code


def test_fault_per_prefix_longest_wins_and_changes_live(served):
    served.faults["/sources/"] = Fault.status(500)
    served.faults["/sources/hello/"] = Fault.status(403)
    assert requests.get(f"{served.url}/sources/hello/file", timeout=2).status_code == 403
    assert requests.get(f"{served.url}/sources/x", timeout=2).status_code == 500
    assert requests.get(f"{served.url}/other", timeout=2).status_code == 200
    served.faults.clear()
    assert requests.get(f"{served.url}/sources/hello/file", timeout=2).status_code == 200
    served.faults["/other?q"] = Fault.body(b"{}", "application/json")  # query counts
    assert requests.get(f"{served.url}/other?q=1", timeout=2).content == b"{}"
    assert requests.get(f"{served.url}/other", timeout=2).content == b"other\n"


def test_fault_delay(served):
    served.fault = Fault.delay(0.4)
    started = time.monotonic()
    r = requests.get(f"{served.url}/other", timeout=2)
    assert r.content == b"other\n" and time.monotonic() - started >= 0.4
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{served.url}/other", timeout=(1, 0.1))


def test_fault_hang_is_bounded_and_stop_returns(served):
    served.fault = Fault.hang()
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{served.url}/other", timeout=(1, 0.3))
    assert time.monotonic() - started < 2
    # A client still waiting while the server stops: stop() must not block.
    errors: list[Exception] = []

    def waiting_client():
        try:
            requests.get(f"{served.url}/other", timeout=10)
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=waiting_client)
    client.start()
    time.sleep(0.2)
    started = time.monotonic()
    served.stop()
    assert time.monotonic() - started < 2
    client.join(3)
    assert not client.is_alive() and errors


def test_fault_trickle(served):
    served.fault = Fault.trickle(bytes_per_second=100, total=40)
    started = time.monotonic()
    # A per-read timeout does not stop a trickle: only a total deadline does.
    r = requests.get(f"{served.url}/other", timeout=(1, 0.2))
    elapsed = time.monotonic() - started
    assert len(r.content) == 40 and r.headers["Content-Length"] == "40"
    assert 0.3 <= elapsed < 2
    served.fault = Fault.trickle(bytes_per_second=20)  # the real file, slowly
    started = time.monotonic()
    assert requests.get(f"{served.url}/other", timeout=2).content == b"other\n"
    assert time.monotonic() - started >= 0.2


def test_fault_oversized_streams_without_tracebacks(served, capfd):
    n = 1 << 30  # 1 GiB announced; never held in memory
    served.fault = Fault.oversized(n)
    with requests.get(f"{served.url}/other", timeout=2, stream=True) as r:
        assert r.headers["Content-Length"] == str(n)
        read = 0
        for chunk in r.iter_content(65536):
            read += len(chunk)
            if read >= 1 << 20:
                break
    assert read >= 1 << 20
    served.fault = Fault.ok()
    assert requests.get(f"{served.url}/other", timeout=2).content == b"other\n"
    time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err


def test_fault_endless(served, capfd):
    served.fault = Fault.endless()
    started = time.monotonic()
    with requests.get(f"{served.url}/other", timeout=2, stream=True) as r:
        assert "Content-Length" not in r.headers
        assert r.headers["Transfer-Encoding"] == "chunked"
        read = 0
        for chunk in r.iter_content(65536):
            read += len(chunk)
            if read >= 4 << 20:
                break
    assert time.monotonic() - started < 5
    served.fault = Fault.ok()
    assert requests.get(f"{served.url}/other", timeout=2).status_code == 200
    # An endless answer in progress does not keep stop() waiting either.
    served.fault = Fault.endless(pause=0.05)
    r = requests.get(f"{served.url}/other", timeout=2, stream=True)
    next(r.iter_content(1024))
    started = time.monotonic()
    served.stop()
    assert time.monotonic() - started < 2
    r.close()
    time.sleep(0.1)
    assert "Traceback" not in capfd.readouterr().err


def test_fault_body(served):
    served.fault = Fault.body(b"\x00not json{", content_type="application/json")
    r = requests.get(f"{served.url}/other", timeout=2)
    assert (r.status_code, r.content, r.headers["Content-Type"]) == (
        200, b"\x00not json{", "application/json")


def test_fault_redirect(served):
    served.faults["/old"] = Fault.redirect("/other")
    r = requests.get(f"{served.url}/old", timeout=2, allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (302, "/other")
    r = requests.get(f"{served.url}/old", timeout=2)
    assert r.content == b"other\n" and [h.status_code for h in r.history] == [302]
    served.faults["/perm"] = Fault.redirect("http://127.0.0.1:9/elsewhere", code=301)
    r = requests.get(f"{served.url}/perm", timeout=2, allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (301, "http://127.0.0.1:9/elsewhere")


def _raw_get(server: RebuilderServer, target: str) -> int:
    """GET with the target sent verbatim (requests would normalize `..`)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    try:
        conn.request("GET", target)
        return conn.getresponse().status
    finally:
        conn.close()


def test_server_no_traversal_outside_root(served, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    (served.root / "escape").symlink_to(secret)
    (served.root / "inside").symlink_to("sources/hello/file")
    for target in ["/../secret", "/%2e%2e/secret", "/sources/../../secret",
                   "/..%2fsecret", "/escape", "/%00", "//etc/passwd"]:
        assert _raw_get(served, target) == 404, target
    assert _raw_get(served, "/inside") == 200
    assert _raw_get(served, "/sources/hello/../../other") == 200  # stays inside


def test_server_answers_proxy_style_requests(served):
    proxies = {"http": served.url}
    r = requests.get("http://rebuilder.example/other", proxies=proxies, timeout=2)
    assert r.content == b"other\n"
    assert served.requests == ["http://rebuilder.example/other"]


def test_server_context_manager(tmp_path):
    (tmp_path / "f").write_bytes(b"f")
    with RebuilderServer(tmp_path) as server:
        url = server.url
        assert requests.get(f"{url}/f", timeout=2).content == b"f"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/f", timeout=1)
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018  (stopped: no URL)
    server.stop()  # idempotent


def test_publish_package_rebuilder_layout(rebuilder_server, tmp_keys, tmp_path):
    key = tmp_keys()
    doc = sign_legacy(make_link({PKG: CONTENT}), key.signer)
    root = tmp_path / "rebuilder"
    path = publish_package_rebuilder(root, "hello", "1.0-1", doc, binaries=["hello-bin"])
    assert path == root / "sources" / "hello" / "1.0-1" / "rebuild.abcd1234.link"
    metadata = path.parent / "metadata"
    assert metadata.is_symlink() and os.readlink(metadata) == "rebuild.abcd1234.link"
    arch = publish_package_rebuilder(root, "hello", "1.0-1", b"{}", arch="amd64")
    assert arch.name == "rebuild.abcd1234.amd64.link"
    assert metadata.read_bytes() == doc  # still the merged link
    unrepro = publish_package_rebuilder(root, "bad", "2.0-1", b"{}", unreproducible=True)
    assert unrepro == root / "unreproducible" / "sources" / "bad" / "2.0-1" / "rebuild.abcd1234.link"

    server = rebuilder_server(root)
    for target in ["/sources/hello/1.0-1/metadata", "/sources/hello-bin/1.0-1/metadata"]:
        r = requests.get(server.url + target, timeout=2)
        assert r.content == doc and r.headers["Content-Type"] == "application/json"
        verify_legacy(r.content, key)


def test_rebuilder_server_fixture_makes_fresh_started_servers(rebuilder_server):
    a, b = rebuilder_server(), rebuilder_server(latency=0.0)
    assert a.root != b.root and a.port != b.port
    assert requests.get(f"{a.url}/nothing", timeout=2).status_code == 404


def test_forward_proxy_refuses_names_it_does_not_map(forward_proxy) -> None:
    """Unmapped names are never looked up: the tests cannot reach the internet through it."""
    import socket

    for request in (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
                    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", forward_proxy.port), timeout=5) as s:
            s.sendall(request)
            assert s.recv(100).startswith(b"HTTP/1.1 502 ")
    assert forward_proxy.requests() == ["GET http://example.com/", "CONNECT example.com:443"]
