"""The compat verdicts of rebuildgate.evidence: real rebuilderd and
apt-transport-in-toto links from <shared>/compat (moved from
tests/common/test_evidence.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebuildgate.errors import BadSignature, UnknownKey
from rebuildgate.evidence import verify_document

from tests.common.test_evidence import gpg_keyset, keyset


def test_compat_rebuilderd_debian_link_votes(compat: Path) -> None:
    ks = keyset("debian", compat / "rebuilderd" / "reproduce-debian-net-amd64.pub")
    link = verify_document((compat / "rebuilderd" / "librust-as-slice-dev_0.2.1-1+b2_amd64.in-toto.link").read_bytes(), ks)
    assert link.products["librust-as-slice-dev_0.2.1-1+b2_amd64.deb"]["sha256"].startswith("32be9549")


def test_compat_rebuilderd_arch_link_votes_and_invalid_does_not(compat: Path) -> None:
    ks = keyset("arch", compat / "rebuilderd" / "reproducible-archlinux.pub")
    good = verify_document((compat / "rebuilderd" / "filesystem-2025.10.12-1-any.in-toto.link").read_bytes(), ks)
    assert good.products["filesystem-2025.10.12-1-any.pkg.tar.zst"]["sha256"].startswith("6b6c3fee")
    with pytest.raises((BadSignature, UnknownKey)):
        verify_document((compat / "rebuilderd" / "filesystem-2025.10.12-1-any.INVALID.in-toto.link").read_bytes(), ks)


def test_compat_rebuilderd_keys_are_not_interchangeable(compat: Path) -> None:
    ks = keyset("debian", compat / "rebuilderd" / "reproduce-debian-net-amd64.pub")
    with pytest.raises(UnknownKey):
        verify_document((compat / "rebuilderd" / "filesystem-2025.10.12-1-any.in-toto.link").read_bytes(), ks)


@pytest.mark.parametrize("who,fpr", [("5863835e", "5863835E5EC8E640FA24410F069EDC1D59B58507"),
                                     ("e946fc60", "E946FC6076D683584E6803DBD35BAD6A79A3C6B3")])
def test_compat_apt_transport_in_toto_links(compat: Path, who, fpr) -> None:
    ks = gpg_keyset(who, fpr, compat / "apt-transport-in-toto" / "gpg_keyring" / "pubring.gpg")
    link = verify_document((compat / "apt-transport-in-toto" / f"rebuild.{who}.link").read_bytes(), ks)
    assert link.products["final-product_0.0.0.0-0_all.deb"]["sha256"].startswith("95b066f5")
