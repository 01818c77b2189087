"""``rebuildgate collect``: the command line of :mod:`rebuildgate.collect`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .policy import load_policy

EXIT_OK, EXIT_INCOMPLETE, EXIT_ERROR = 0, 1, 2


def add_collect_parser(sub: argparse._SubParsersAction) -> None:
    from .cli import _artifact_args

    c = sub.add_parser("collect", help="fetch the rebuilders' evidence for packages into an evidence bundle "
                                       "(for a machine without network: [fetch] bundle); verifies nothing")
    c.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="the bundle directory")
    c.add_argument("--tar", type=Path, metavar="FILE", help="also write the bundle as one tar file")
    _artifact_args(c)


def cmd_collect(args: argparse.Namespace) -> int:
    """Exit 0: every rebuilder answered for every package (a document, or "none");
    1: the bundle was written but some documents could not be fetched (the
    reader will count them as missing); 2: usage, policy or write errors."""
    from .cli import artifacts_from_args
    from .collect import collect
    from .statusview import Progress

    artifacts, status = artifacts_from_args(args)
    policy = load_policy(args.policy, check_files=False)  # no keys needed: nothing is verified here
    report = collect(policy, artifacts, args.output, progress=Progress(sys.stderr, command="collect"),
                     tar=args.tar)
    print(f"rebuildgate: collect: {report.summary()}")
    for entry in report.by_status("error"):
        print(f"rebuildgate: collect: {entry.rebuilder}: {entry.detail}", file=sys.stderr)
    for rebuilder, package, why in report.failures:
        print(f"rebuildgate: collect: {rebuilder}: {package}: {why}", file=sys.stderr)
    if status != EXIT_OK:
        return status
    return EXIT_OK if report.complete else EXIT_INCOMPLETE
