"""Drop root the way apt's own methods do (apt-pkg/contrib/fileutl.cc).

apt starts every method as root and its methods switch to
``APT::Sandbox::User`` (``_apt``) as soon as they have their configuration.
apt itself sets that item to ``root`` when the sandbox user could not reach
the download directories (with a warning), and to ``""`` when the user does
not exist; the method follows whatever apt sent, so it runs with the same
identity as the http method it delegates to.  Everything that needs root
(the policy, the keys, the decision log) is opened *before* this is called:
afterwards, network and parsing of rebuilder data run unprivileged.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from dataclasses import dataclass

PR_SET_NO_NEW_PRIVS = 38


class SandboxError(Exception):
    """Privileges could not be dropped; the method must not go on as root."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    user: str

    def __str__(self) -> str:
        return f"uid {self.uid} ({self.user}), gid {self.gid}"


def current() -> Identity:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Identity(uid, os.getegid(), name)


def _no_new_privs() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # EINVAL on old kernels: ignored, as apt does
    except (OSError, AttributeError):
        pass


def drop_privileges(user: str, skip: bool = False) -> Identity:
    """Switch the whole process (all threads) to *user*, as apt's DropPrivileges.

    Nothing happens when not running as root, when *user* is empty or
    ``root``, or when *skip* (``Debug::NoDropPrivs``) is set.  Raises
    SandboxError when the switch is incomplete.
    """
    if skip:
        return current()
    _no_new_privs()
    if not user or user == "root" or os.getuid() != 0:
        return current()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"no user {user} (APT::Sandbox::User), cannot drop privileges") from None
    try:
        os.setgroups([pw.pw_gid])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    except OSError as e:
        raise SandboxError(f"cannot switch to user {user}: {e.strerror or e}") from None
    if set(os.getresuid()) != {pw.pw_uid} or set(os.getresgid()) != {pw.pw_gid}:
        raise SandboxError(f"switch to user {user} left other ids behind")
    if pw.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise SandboxError(f"could regain root after switching to {user}")
    os.environ.update(HOME=pw.pw_dir, USER=pw.pw_name, USERNAME=pw.pw_name, LOGNAME=pw.pw_name)
    shell = os.path.basename(pw.pw_shell)
    os.environ["SHELL"] = "/bin/sh" if shell in ("false", "nologin") else pw.pw_shell
    return current()
