"""What apt writes to a ``DPkg::Pre-Install-Pkgs`` command (protocol version 3).

apt runs the command right before dpkg, in every libapt front end (apt,
apt-get, aptitude, python-apt's ``commit``, so unattended-upgrades too), and
writes to its stdin (or to the fd named by ``APT_HOOK_INFO_FD`` when the
command's ``InfoFD`` option is set).  As apt 2.6 writes it::

    VERSION 3
    APT::Architecture=amd64            <- apt's whole configuration, one item a line,
    Dir::Cache::archives=archives/        name and value %-quoted as in 601 Configuration
    ...
                                       <- an empty line ends the configuration
    hello - - none < 1:1.0-1 all none /var/cache/apt/archives/hello_1%3a1.0-1_all.deb
    hello - - none < 1:1.0-1 all none **CONFIGURE**
    old 2.0-1 all none > - - none **REMOVE**

A package line is: name, old version, old arch, old multi-arch, ``<`` / ``>``
/ ``=`` (how the new version compares), new version, new arch, new
multi-arch, then the file dpkg will unpack or ``**CONFIGURE**`` /
``**REMOVE**`` (``-`` where there is no version).  The file name is the rest
of the line: a local ``./x.deb`` may have spaces in its path.

Nothing here decides anything; a stream that is not version 3 is an error
(the hook then refuses: it cannot know what it was asked to check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import protocol

VERSION = 3
ACTIONS = ("**CONFIGURE**", "**REMOVE**")
_FIELDS = 9


class HookInputError(Exception):
    """apt's input is not what a version 3 hook expects (one line)."""


@dataclass(frozen=True)
class PackageLine:
    """One package line; ``action`` is a file path, ``**CONFIGURE**`` or ``**REMOVE**``."""

    name: str
    old_version: str
    old_arch: str
    direction: str
    new_version: str
    new_arch: str
    action: str

    @property
    def path(self) -> str | None:
        """The file apt hands to dpkg, if this line unpacks one."""
        return None if self.action in ACTIONS else self.action


@dataclass
class HookInput:
    """The configuration apt ran with and the package lines, in apt's order."""

    config: list[tuple[str, str]] = field(default_factory=list)
    packages: list[PackageLine] = field(default_factory=list)

    @property
    def files(self) -> list[PackageLine]:
        """The lines that unpack a file, each file once."""
        seen: set[str] = set()
        out = []
        for line in self.packages:
            if line.path is not None and line.path not in seen:
                seen.add(line.path)
                out.append(line)
        return out


def parse(text: str) -> HookInput:
    """Parse what apt wrote; raises HookInputError for anything but version 3."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # what follows the last newline is not a line
    first = lines[0].strip() if lines else ""
    if first != f"VERSION {VERSION}":
        got = f"{first[:40]!r}" if first.startswith("VERSION ") else "a file list without a VERSION line (version 1)"
        raise HookInputError(f"apt sent {got}, not VERSION {VERSION}: set DPkg::Tools::Options::<this hook>::Version "
                             f"\"{VERSION}\" (python -m rebuildgate.apt.install writes it)")
    hook = HookInput()
    rest = iter(lines[1:])
    for line in rest:
        if line == "":
            break
        try:
            hook.config.append(protocol.parse_config_item(line))
        except ValueError as e:
            raise HookInputError(f"unreadable configuration line from apt: {e}") from None
    else:
        raise HookInputError("apt's input ended inside the configuration (no empty line after it)")
    hook.packages = list(_package_lines(rest))
    return hook


def _package_lines(lines: Iterable[str]) -> Iterable[PackageLine]:
    for line in lines:
        if not line.strip():
            continue
        parts = line.split(" ", _FIELDS - 1)
        if len(parts) != _FIELDS or parts[4] not in ("<", ">", "=") or not parts[0] or not parts[8]:
            raise HookInputError(f"unreadable package line from apt: {protocol.field_value(line, 120)!r}")
        name, old_version, old_arch, _old_multi, direction, new_version, new_arch, _new_multi, action = parts
        yield PackageLine(name, old_version, old_arch, direction, new_version, new_arch, action)
