"""The pre-prompt hook's entry point: apt's conversation, before anything heavy is imported.

apt runs its JSON hooks once per notification: ``install.pre-prompt``,
``install.package-list`` and ``install.statistics`` before the Y/n prompt,
``install.post`` or ``install.fail`` after it, each in a process of its
own that answers hello and reads to bye (:mod:`.jsonhook`).  Only the
first has anything to judge.  Like the method's :mod:`.entry`, this module
imports nothing but the wire format, so the other runs cost an
interpreter's start and no more (about 15 ms each, not 40); a pre-prompt
notification loads :mod:`.prompt` and the library.
"""

from __future__ import annotations

import os
import sys

from . import jsonhook

EXIT_OK = 0
#: Blocked: apt stops.  Distinct from Python's 1 so that the launcher can
#: tell a verdict from a crash (a crash must not stop apt: the method decides).
EXIT_BLOCKED = 10
LEFT_TO_METHOD = "the download check decides"


def session(environ, stream) -> int:  # noqa: ANN001 - Mapping[str, str], TextIO (typing costs an import)
    """One run of the hook: handshake, one notification, bye; returns the exit status."""
    channel: jsonhook.Channel | None = None
    try:
        channel = jsonhook.Channel.from_env(dict(environ))
        channel.handshake()
        note = channel.read()
        if note is None or note.method != jsonhook.PRE_PROMPT:
            if note is not None and note.method != jsonhook.BYE:
                channel.until_bye()
            return EXIT_OK  # package-list, statistics, post, fail: nothing to judge
        channel.until_bye()  # apt has said all it will; it now waits for the verdict
        packages = jsonhook.installs(note.params)
    except jsonhook.ProtocolError as e:
        return fail(stream, str(e))
    finally:
        if channel is not None:
            channel.close()
    if not packages:
        return EXIT_OK  # removals only
    from .prompt import judge_transaction

    return judge_transaction(packages, stream)


def fail(stream, why: str) -> int:  # noqa: ANN001 - TextIO
    """The hook's own trouble: one ``W:`` line, and apt goes on (the method decides)."""
    from rebuildgate.errors import one_line

    stream.write(f"W: {one_line(f'rebuildgate: {why}; {LEFT_TO_METHOD}', 2000)}\n")
    stream.flush()
    return EXIT_OK


def main() -> None:
    """Console script ``rebuildgate-apt-prompt`` (apt runs it through the launcher install.py writes)."""
    code = session(os.environ, sys.stderr)
    sys.stderr.flush()
    # Fetcher threads may still wait on a rebuilder (bounded by its deadline): apt waits for this process.
    os._exit(code)


if __name__ == "__main__":
    main()
