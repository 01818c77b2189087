"""The method's entry point: introduce it to apt before importing anything heavy.

apt starts every method once only to read its ``100 Capabilities`` (and then
closes that instance), and once more for the downloads; both starts lie on
the path of every ``apt-get`` run.  For the schemes whose capabilities are
known this module writes them at once, with nothing imported but ``os`` and
``sys``, and only then loads :mod:`.method` (the relay, ~20 ms of imports)
and the library.
"""

from __future__ import annotations

import os
import signal
import sys

PREFIX = "rebuildgate+"
VERSION = "1.2"
#: What apt 2.6's own methods announce (seen on Debian 12), with the two
#: capabilities the gate needs itself: apt sends its configuration
#: (Send-Config) and queues many downloads with us at once (Pipeline), which
#: is what lets them be verified concurrently.  The method compares these
#: with the real inner method's and reports a difference in its debug log.
#: ``DEFAULT_CAPABILITIES`` are also what the method announces for a scheme
#: whose own method it could not ask.
DEFAULT_CAPABILITIES = [("Send-URI-Encoded", "true"), ("Send-Config", "true"), ("Pipeline", "true"),
                        ("Version", VERSION)]
KNOWN_CAPABILITIES: dict[str, list[tuple[str, str]]] = {
    "http": DEFAULT_CAPABILITIES,
    "https": DEFAULT_CAPABILITIES,
    "file": [("Send-URI-Encoded", "true"), ("Local-Only", "true"), ("Send-Config", "true"),
             ("Single-Instance", "true"), ("Version", "1.0"), ("Pipeline", "true")],
}


def capabilities_message(fields: list[tuple[str, str]]) -> bytes:
    return ("100 Capabilities\n" + "".join(f"{k}: {v}\n" for k, v in fields) + "\n").encode("ascii")


def inner_scheme(argv0: str) -> str:
    name = os.path.basename(argv0)
    return name[len(PREFIX):] if name.startswith(PREFIX) else ""


def _leave(signum, frame) -> None:  # noqa: ANN001
    os._exit(0)


def main() -> int:
    """Console script ``rebuildgate-apt-method``.

    Run by the launcher :mod:`.install` writes as ``<methods>/rebuildgate``:
    ``rebuildgate-apt-method --name <the name apt ran> [--introduced]``
    (``--introduced``: the launcher has sent the capabilities already).
    Run directly under a ``rebuildgate+<scheme>`` name, it introduces itself.
    """
    args = sys.argv[1:]
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "rebuildgate"
    introduced = False
    if len(args) >= 2 and args[0] == "--name":
        argv0, args = args[1], args[2:]
        introduced = args[:1] == ["--introduced"]
    # apt ends the instance it started only to read the capabilities,
    # often while the rest is still being imported: leave quietly
    # (method.main installs the real handlers).
    signal.signal(signal.SIGINT, _leave)
    signal.signal(signal.SIGTERM, _leave)
    # The launcher runs us as a background job, which a shell starts with
    # SIGQUIT ignored; apt's inner method must not inherit that.
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    fields = KNOWN_CAPABILITIES.get(inner_scheme(argv0))
    if fields is not None and not introduced:
        try:
            os.write(1, capabilities_message(fields))
            introduced = True
        except OSError:
            pass  # apt is gone; the method notices on stdin
    from .method import main as method_main

    return method_main(argv0, introduced=introduced)
