"""What the method takes from apt's ``601 Configuration``.

apt sends its whole configuration tree (``-o`` options and the private
``APT_CONFIG`` of the tests included), so the method reads *that*, never
/etc/apt directly: it then follows exactly the configuration apt runs with.
Values are looked up with apt's own rules (python-apt's ``Configuration``:
case-insensitive keys, ``FindDir`` joining relative paths to their parents,
``FindB`` for booleans).

Items apt may send are arbitrary; one that cannot be parsed is skipped, as
apt's own methods skip it, unless it is one of ours (``Rebuildgate::*``): a
broken trust setting must not fall back to a default silently, so it becomes
a :class:`MethodConfigError`, which blocks every package (fail closed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rebuildgate.proxy import ProxyChoice

from . import protocol

PREFIX = "Rebuildgate::"
#: The items of ours the method understands; any other ``Rebuildgate::`` item
#: is a typo that must not be ignored.
KNOWN = {
    "rebuildgate::policy": "path of the policy file",
    "rebuildgate::debug": "true to print what the method does on stderr",
    "rebuildgate::prompt::deadline": "seconds the pre-prompt hook waits for rebuilders (the method ignores it)",
}


class MethodConfigError(Exception):
    """apt's configuration for the method is unusable (one line)."""


@dataclass
class MethodSettings:
    """The handful of values the method acts on, resolved once."""

    policy: Path | None = None  # None: $REBUILDGATE_POLICY or the default
    debug: bool = False
    sandbox_user: str = ""
    no_drop_privs: bool = False
    archives_dir: str = "/var/cache/apt/archives/"
    proxy: ProxyChoice | None = None  # apt's proxy settings, applied per evidence URL
    skipped: list[str] = field(default_factory=list)  # unparseable items, for the debug log
    error: str | None = None  # set when one of our own items is broken


class AptConfig:
    """apt's configuration as the method received it."""

    def __init__(self) -> None:
        import apt_pkg

        self.items: list[tuple[str, str]] = []
        self.tree = apt_pkg.Configuration()
        self.skipped: list[str] = []
        self.errors: list[str] = []

    @classmethod
    def from_message(cls, message: protocol.Message) -> "AptConfig":
        config = cls()
        for item in protocol.config_items(message):
            if isinstance(item, ValueError):
                config.skipped.append(str(item))
                continue
            config.add(*item)
        return config

    def add(self, name: str, value: str) -> None:
        ours = name.lower().startswith(PREFIX.lower())
        try:
            self.tree.set(name, value)
        except (ValueError, TypeError, SystemError, UnicodeError) as e:
            (self.errors if ours else self.skipped).append(f"{protocol.field_value(name, 80)}: {e}")
            return
        self.items.append((name, value))
        if ours and name.lower() not in KNOWN:
            self.errors.append(f"unknown apt option {name} (known: Rebuildgate::Policy, Rebuildgate::Debug, Rebuildgate::Prompt::Deadline)")

    # -- lookups with apt's semantics ------------------------------------

    def find(self, name: str, default: str = "") -> str:
        return self.tree.find(name, default)

    def find_b(self, name: str, default: bool = False) -> bool:
        return bool(self.tree.find_b(name, default))

    def exists(self, name: str) -> bool:
        return bool(self.tree.exists(name))

    def find_dir(self, name: str, default: str = "") -> str:
        return self.tree.find_dir(name, default)

    def method_path(self, access: str) -> str:
        """Where apt would look for the method *access* (Worker::Start)."""
        item = f"Dir::Bin::Methods::{access}"
        if self.exists(item):
            return self.tree.find_file(item, "")
        return os.path.join(self.find_dir("Dir::Bin::Methods", "/usr/lib/apt/methods/"), access)

    def proxy_for(self, access: str = "http") -> ProxyChoice:
        """apt's proxy settings (``Acquire::http(s)::Proxy...``), for the evidence URLs."""
        return proxy_for(self.find, access)

    def settings(self, access: str) -> MethodSettings:
        """Resolve what the method needs; errors in our own items are kept, not raised."""
        s = MethodSettings()
        s.skipped = list(self.skipped)
        policy = self.find("Rebuildgate::Policy", "")
        if self.exists("Rebuildgate::Policy") and not policy.strip():
            self.errors.append("Rebuildgate::Policy is set but empty")
        elif policy:
            if "\0" in policy:
                self.errors.append("Rebuildgate::Policy contains a NUL byte")
            else:
                s.policy = Path(policy)
        raw_debug = self.find("Rebuildgate::Debug", "")
        s.debug = self.find_b("Rebuildgate::Debug", False)
        if raw_debug and raw_debug.strip().lower() not in _BOOLEANS:
            self.errors.append(f"Rebuildgate::Debug must be true or false, not {protocol.field_value(raw_debug, 60)!r}")
        # Absent means apt decided against a sandbox (it blanks the item when _apt
        # cannot reach the download directories): its own methods then stay root.
        s.sandbox_user = self.find("APT::Sandbox::User", "")
        s.no_drop_privs = self.find_b("Debug::NoDropPrivs", False)
        s.archives_dir = self.find_dir("Dir::Cache::Archives", "/var/cache/apt/archives/")
        s.proxy = self.proxy_for(access)
        if self.errors:
            s.error = "; ".join(self.errors)
        return s

    def apply_globally(self) -> None:
        """Copy the items into python-apt's global config (for its cache)."""
        import apt_pkg

        for name, value in self.items:
            try:
                apt_pkg.config.set(name, value)
            except (ValueError, TypeError, SystemError, UnicodeError):
                continue


def proxy_for(find: Callable[[str, str], str], access: str = "http") -> ProxyChoice:
    """apt's proxy settings in a configuration looked up with *find*.

    The choice is made per evidence URL, by that URL's scheme and host
    (``Acquire::https::Proxy::<host>`` for an https rebuilder even behind a
    ``rebuildgate+http`` source), not by the method's *access*, which is
    ignored: see :mod:`rebuildgate.proxy` for apt's rules.
    """
    del access
    return ProxyChoice.apt(find)


_BOOLEANS = {"1", "0", "yes", "no", "true", "false", "with", "without", "on", "off", "enable", "disable"}
