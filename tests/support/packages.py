"""Tiny, reproducible .deb and .rpm packages and local repositories.

Reproducibility matters here for the same reason it matters to rebuildgate:
a test "rebuilder" attests the hash of a package built from the same inputs,
so building twice must give the same bytes. Everything that could leak the
build time or machine (mtimes, owners, build host, compression headers) is
pinned.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

# 2023-11-14T22:13:20Z; any fixed value works, it only has to be fixed.
SOURCE_DATE_EPOCH = 1700000000
INSTALL_DIR = "usr/share/rebuildgate-test"


def _build_env() -> dict[str, str]:
    """The environment for build tools: SOURCE_DATE_EPOCH set for the child
    only (never in our own process), and a fixed locale and time zone."""
    env = dict(os.environ)
    env.update(SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), LC_ALL="C.UTF-8", TZ="UTC")
    return env


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=_build_env(), capture_output=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} failed ({proc.returncode}):\n"
            f"{proc.stdout.decode(errors='replace')}\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pin_tree(root: Path) -> None:
    """Fixed modes and mtimes for everything under root (and root)."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


def deb_filename(name: str, version: str, arch: str = "all") -> str:
    """The pool file name: `name_version_arch.deb`, the epoch dropped."""
    upstream = version.split(":", 1)[1] if ":" in version else version
    return f"{name}_{upstream}_{arch}.deb"


def build_deb(
    outdir: Path,
    name: str,
    version: str,
    arch: str = "all",
    source: str | None = None,
    payload: bytes = b"hello\n",
    depends: str | None = None,
) -> Path:
    """Build a minimal .deb installing /usr/share/rebuildgate-test/{name}.

    `version` may carry an epoch ("2:1.0-1"): the control file keeps it, the
    file name drops it. `source` adds a `Source:` field (write "src (1.0-1)"
    for a source version differing from the binary's).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    control = [
        f"Package: {name}",
        *([f"Source: {source}"] if source else []),
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: rebuildgate tests <tests@rebuildgate.invalid>",
        *([f"Depends: {depends}"] if depends else []),
        f"Installed-Size: {max(1, (len(payload) + 1023) // 1024)}",
        "Section: misc",
        "Priority: optional",
        f"Description: rebuildgate test package {name}",
        " Installs one small file; built reproducibly by the test suite.",
    ]
    target = outdir / deb_filename(name, version, arch)
    with tempfile.TemporaryDirectory(prefix="deb-") as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        (root / INSTALL_DIR).mkdir(parents=True)
        (root / INSTALL_DIR / name).write_bytes(payload)
        _pin_tree(root)
        _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)])
    return target


def rpm_filename(name: str, version: str, release: str = "1") -> str:
    """The file name rpmbuild gives a noarch binary package."""
    return f"{name}-{version}-{release}.noarch.rpm"


def build_rpm(
    outdir: Path,
    name: str,
    version: str,
    release: str = "1",
    epoch: int | None = None,
    source_name: str | None = None,
    payload: bytes = b"hello\n",
    requires: str | None = None,
) -> Path:
    """Build a minimal unsigned noarch .rpm installing
    /usr/share/rebuildgate-test/{name}, and return its path in `outdir`.

    With `source_name` the spec is named after the source package and the
    binary is a `%package -n {name}` subpackage, so the header's SOURCERPM is
    `{source_name}-{version}-{release}.src.rpm` as for real split packages.

    rpm 4.18 builds are byte-identical here given SOURCE_DATE_EPOCH,
    use_source_date_epoch_as_buildtime, clamped mtimes and a fixed build host
    (checked by the test suite, also across different %_topdir paths).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    spec_name = source_name or name
    split = spec_name != name
    pkg = f"-n {name}" if split else ""
    requires_line = [f"Requires: {requires}"] if requires else []
    header = [
        f"Name: {spec_name}",
        f"Version: {version}",
        f"Release: {release}",
        *([f"Epoch: {epoch}"] if epoch is not None else []),
        "Summary: rebuildgate test package",
        "License: MIT",
        "URL: https://rebuildgate.invalid/",
        "BuildArch: noarch",
        "Source0: payload",
        *([] if split else requires_line),
        "",
        "%description",
        "Installs one small file; built reproducibly by the test suite.",
        "",
    ]
    if split:  # Requires belongs to the binary package's own preamble
        header += [f"%package {pkg}", f"Summary: rebuildgate test package {name}"]
        header += [*requires_line, "", f"%description {pkg}", f"Binary package {name}.", ""]
    body = [
        "%install",
        f"mkdir -p %{{buildroot}}/{INSTALL_DIR}",
        f"install -m 0644 %{{SOURCE0}} %{{buildroot}}/{INSTALL_DIR}/{name}",
        "",
        f"%files {pkg}",
        f"/{INSTALL_DIR}/{name}",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="rpm-") as tmp:
        top = Path(tmp)
        (top / "SOURCES").mkdir()
        (top / "SOURCES" / "payload").write_bytes(payload)
        spec = top / f"{spec_name}.spec"
        spec.write_text("\n".join(header + body))
        _run(
            [
                "rpmbuild", "-bb", "--quiet",
                "--define", f"_topdir {top}",
                "--define", "use_source_date_epoch_as_buildtime 1",
                "--define", "clamp_mtime_to_source_date_epoch 1",
                "--define", "_buildhost rebuildgate.invalid",
                "--define", "debug_package %{nil}",
                "--define", "_binary_payloadio w9.gzdio",
                str(spec),
            ]
        )
        built = top / "RPMS" / "noarch" / rpm_filename(name, version, release)
        target = outdir / built.name
        shutil.copyfile(built, target)
    return target


def build_rpm_family(outdir: Path, source: str, names: list[str], version: str = "1.0",
                     release: str = "1") -> list[Path]:
    """Many small noarch binary rpms from one source package, in one rpmbuild
    run (a spec with a ``%package -n NAME`` per name): thousands of packages
    for a benchmark in seconds, each installing /usr/share/rebuildgate-test/NAME.
    Built reproducibly like :func:`build_rpm`."""
    outdir.mkdir(parents=True, exist_ok=True)
    lines = [f"Name: {source}", f"Version: {version}", f"Release: {release}", "Summary: rebuildgate bench",
             "License: MIT", "URL: https://rebuildgate.invalid/", "BuildArch: noarch", "Source0: payload", "",
             "%description", "Bench packages.", ""]
    for name in names:
        lines += [f"%package -n {name}", f"Summary: {name}", "", f"%description -n {name}", name, ""]
    lines += ["%install", f"mkdir -p %{{buildroot}}/{INSTALL_DIR}"]
    lines += [f"install -m 0644 %{{SOURCE0}} %{{buildroot}}/{INSTALL_DIR}/{name}" for name in names]
    lines.append("")
    for name in names:
        lines += [f"%files -n {name}", f"/{INSTALL_DIR}/{name}", ""]
    with tempfile.TemporaryDirectory(prefix="rpm-") as tmp:
        top = Path(tmp)
        (top / "SOURCES").mkdir()
        (top / "SOURCES" / "payload").write_bytes(b"bench\n")
        spec = top / f"{source}.spec"
        spec.write_text("\n".join(lines))
        _run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
              "--define", "use_source_date_epoch_as_buildtime 1", "--define", "clamp_mtime_to_source_date_epoch 1",
              "--define", "_buildhost rebuildgate.invalid", "--define", "debug_package %{nil}",
              "--define", "_binary_payloadio w9.gzdio", str(spec)])
        out = []
        for name in names:
            built = top / "RPMS" / "noarch" / rpm_filename(name, version, release)
            shutil.copyfile(built, outdir / built.name)
            out.append(outdir / built.name)
    return out


def _gzip_reproducibly(path: Path) -> Path:
    """path.gz with no name and a zero mtime in the gzip header."""
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            shutil.copyfileobj(src, gz)
    return target


def make_apt_repo(repo_dir: Path, debs: list[Path]) -> Path:
    """A flat APT repository (`deb [trusted=yes] URL ./`): the debs, Packages,
    Packages.gz and an unsigned Release."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        if deb.resolve() != (repo_dir / deb.name).resolve():
            shutil.copyfile(deb, repo_dir / deb.name)
    packages = _run(["apt-ftparchive", "packages", "."], cwd=repo_dir).stdout
    (repo_dir / "Packages").write_bytes(packages)
    _gzip_reproducibly(repo_dir / "Packages")
    release = _run(["apt-ftparchive", "release", "."], cwd=repo_dir).stdout
    (repo_dir / "Release").write_bytes(release)
    return repo_dir


def rewrite_apt_index(repo_dir: Path, edit: Callable[[str], str]) -> None:
    """Let an attacker rewrite a flat repository's Packages text (the files
    stay as they are); Packages.gz and Release are made anew to match."""
    packages = repo_dir / "Packages"
    packages.write_text(edit(packages.read_text()))
    _gzip_reproducibly(packages)
    (repo_dir / "Release").write_bytes(_run(["apt-ftparchive", "release", "."], cwd=repo_dir).stdout)


def rewrite_rpm_primary(repo_dir: Path, edit: Callable[[str], str]) -> None:
    """Let an attacker rewrite an rpm repository's primary.xml (the rpms stay
    as they are); repomd.xml's checksums and sizes are made to match, as a
    compromised mirror would publish them."""
    repomd = repo_dir / "repodata" / "repomd.xml"
    text = repomd.read_text()
    block = re.search(r'<data type="primary">.*?</data>', text, re.S)
    assert block is not None, f"no primary data in {repomd}"
    href = re.search(r'<location href="([^"]+)"', block.group(0))
    assert href is not None
    old_path = repo_dir / href.group(1)
    xml = edit(gzip.decompress(old_path.read_bytes()).decode("utf-8")).encode("utf-8")
    packed = gzip.compress(xml, mtime=0)
    digest = hashlib.sha256(packed).hexdigest()
    new_path = old_path.with_name(f"{digest}-primary.xml.gz")
    old_path.unlink()
    new_path.write_bytes(packed)
    fields = {"checksum": digest, "open-checksum": hashlib.sha256(xml).hexdigest(),
              "size": str(len(packed)), "open-size": str(len(xml))}
    new_block = block.group(0).replace(href.group(1), f"repodata/{new_path.name}")
    for tag, value in fields.items():
        new_block = re.sub(rf"(<{tag}[^>]*>)[^<]*(</{tag}>)", rf"\g<1>{value}\g<2>", new_block)
    repomd.write_text(text.replace(block.group(0), new_block))


def make_apt_archive(root: Path, debs: list[Path], suite: str = "bookworm", component: str = "main") -> Path:
    """An APT archive in Debian's layout (`deb [trusted=yes] URL suite component`):
    the debs under pool/, and dists/<suite>/<component>/binary-all/Packages(.gz)
    with an unsigned dists/<suite>/Release."""
    for deb in debs:
        pool = root / "pool" / component / deb.name[0] / deb.name.split("_")[0]
        pool.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deb, pool / deb.name)
    index = root / "dists" / suite / component / "binary-all"
    index.mkdir(parents=True, exist_ok=True)
    (index / "Packages").write_bytes(_run(["apt-ftparchive", "packages", "pool"], cwd=root).stdout)
    _gzip_reproducibly(index / "Packages")
    options = [f"APT::FTPArchive::Release::{k}={v}" for k, v in (
        ("Suite", suite), ("Codename", suite), ("Architectures", "all amd64"), ("Components", component))]
    release = _run(["apt-ftparchive", *(x for o in options for x in ("-o", o)), "release", f"dists/{suite}"],
                   cwd=root).stdout
    (root / "dists" / suite / "Release").write_bytes(release)
    return root


def make_rpm_repo(repo_dir: Path, rpms: list[Path]) -> Path:
    """An RPM repository (rpms + repodata/ by createrepo_c)."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    for rpm in rpms:
        if rpm.resolve() != (repo_dir / rpm.name).resolve():
            shutil.copyfile(rpm, repo_dir / rpm.name)
    _run(["createrepo_c", "--quiet", "--no-database", "."], cwd=repo_dir)
    return repo_dir
