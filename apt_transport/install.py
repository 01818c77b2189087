"""Install the method into an APT methods directory, and the pre-install hook.

A Debian package would ship ``/usr/lib/apt/methods/rebuildgate`` (a small
launcher script, see :func:`launcher_script`) and the ``rebuildgate+http``,
``rebuildgate+https`` and ``rebuildgate+file`` symlinks to it; apt runs
``rebuildgate+http`` for ``rebuildgate+http://`` URIs and the method finds
the inner scheme in the name it was run as.  Tests, the
demo and the benchmark build a private methods directory the same way:
links to every method of apt's, plus ours.

The same step installs the ``DPkg::Pre-Install-Pkgs`` hook
(:mod:`.preinstall`): a launcher, ``/usr/lib/rebuildgate/rebuildgate-preinstall``,
and the apt.conf.d snippet that makes apt run it with protocol version 3
(:func:`install_hook`); the snippet also runs the pre-prompt hook
(:mod:`.prompt`, launcher ``/usr/lib/rebuildgate/rebuildgate-prompt``) as
``AptCli::Hooks::Install`` and ``::Upgrade``, and the warm-up (:mod:`.warmup`, launcher
``/usr/lib/rebuildgate/rebuildgate-warmup``) after ``apt-get update``.  Without a policy
file the hooks do nothing, so installing never breaks apt.

``python -m rebuildgate.apt.install DIR [--hook-dir D] [--apt-conf-dir C]``
``python -m rebuildgate.apt.install DIR --with-apt-methods [--apt-conf-dir C]`` (a private apt)
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from pathlib import Path

from rebuildgate.atomic import write_atomic

from .entry import KNOWN_CAPABILITIES, PREFIX, capabilities_message

SCHEMES = ("http", "https", "file")
APT_METHODS = Path("/usr/lib/apt/methods")
HOOK_DIR = Path("/usr/lib/rebuildgate")
HOOK_NAME = "rebuildgate-preinstall"
#: The pre-prompt hook's launcher, beside the pre-install hook's.
PROMPT_NAME = "rebuildgate-prompt"
#: The warm-up's launcher (``APT::Update::Post-Invoke-Success``), installed with the pre-prompt hook.
WARMUP_NAME = "rebuildgate-warmup"
APT_CONF_DIR = Path("/etc/apt/apt.conf.d")
#: Read before apt-listbugs (10) and apt-listchanges (20): a blocked package
#: stops apt before those show anything or ask.
SNIPPET_NAME = "05rebuildgate-preinstall"
#: apt names a hook's options after its command up to the first space and
#: runs it with ``sh -c``: the path must be a plain word.
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._+/-]+$")
#: Who wrote a launcher or snippet, as its comment says (the packages say so too).
WRITTEN_BY = "python -m rebuildgate.apt.install"


def console_script(name: str) -> Path:
    """The console script *name* of this installation (beside the interpreter, else on PATH)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return here
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (pip install -e .)")
    return Path(found)


def method_executable() -> Path:
    """The console script ``rebuildgate-apt-method`` of this installation."""
    return console_script("rebuildgate-apt-method")


def hook_executable() -> Path:
    """The console script ``rebuildgate-apt-preinstall`` of this installation."""
    return console_script("rebuildgate-apt-preinstall")


def prompt_executable() -> Path:
    """The console script ``rebuildgate-apt-prompt`` of this installation."""
    return console_script("rebuildgate-apt-prompt")


def warmup_executable() -> Path:
    """The console script ``rebuildgate-apt-warmup`` of this installation."""
    return console_script("rebuildgate-apt-warmup")


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Replace *path* in one step: apt never reads half a file or finds none."""
    write_atomic(path, text.encode(), mode)


def install_method(methods_dir: Path, executable: Path | None = None, schemes=SCHEMES) -> list[Path]:
    """Create ``rebuildgate`` -> executable and ``rebuildgate+<scheme>`` -> ``rebuildgate``."""
    methods_dir.mkdir(parents=True, exist_ok=True)
    target = executable or method_executable()
    launcher = methods_dir / "rebuildgate"
    _write_atomically(launcher, launcher_script(target), 0o755)
    made = [launcher]
    for name in [f"rebuildgate+{s}" for s in schemes]:
        link = methods_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("rebuildgate")
        made.append(link)
    return made


def launcher_script(target: Path, by: str = WRITTEN_BY) -> str:
    """``<methods>/rebuildgate``: a shell script that introduces the method, then runs it.

    apt starts every method once only to read its ``100 Capabilities`` and
    then stops it (SIGINT, and waits for it), and once more for the
    downloads.  The script prints the capabilities of the schemes it knows
    at once and runs the Python method as its child: the instance apt stops
    right away costs a fork, not an interpreter start (~40 ms on every
    ``apt-get`` run).  On SIGINT or SIGTERM it stops the method with
    SIGTERM (a clean shutdown once the method is running, a quiet end before
    that) and waits for it.  apt closes the method's pipes before it
    signals, so should the shell run its trap late (dash can defer a signal
    that arrives just before ``wait``), the method still ends as soon as it
    reads the closed pipe (measured over 200 stops: median 1.4 ms, worst
    0.11 s).  A background child of a non-interactive shell reads /dev/null
    (``0<&0`` does not undo that in dash), so apt's pipe is handed over as
    fd 3 first.
    """
    program = shlex.quote(str(target))
    cases = []
    for scheme, fields in KNOWN_CAPABILITIES.items():
        message = capabilities_message(fields).decode("ascii")
        cases.append(f"  {PREFIX}{scheme}) printf '%s' {shlex.quote(message)}; introduced=--introduced ;;\n")
    return (
        "#!/bin/sh\n"
        f"# rebuildgate's APT method launcher, written by {by}\n"
        "# (see launcher_script there for why it is a shell script).\n"
        # $! (not a variable set after the fork): a stop right after the fork still reaches the child
        "trap 'if [ -n \"$!\" ]; then kill -TERM \"$!\" 2>/dev/null; wait \"$!\" 2>/dev/null; fi; exit 0' INT TERM\n"
        "introduced=\n"
        'case "${0##*/}" in\n'
        + "".join(cases) +
        "esac\n"
        "exec 3<&0\n"
        f'{program} --name "$0" $introduced <&3 3<&- &\n'
        'wait "$!"\n'
        'exit "$?"\n'
    )


def _if_present(program: Path | str) -> str:
    """A shell command (apt runs hooks with ``/bin/sh -c``) that runs *program*
    with its own exit status, or does nothing once the package that held it
    was removed (apt notifies ``install.post`` after removing it)."""
    return f"[ ! -e {program} ] || {program}"


def install_hook(hook_dir: Path, apt_conf_dir: Path, executable: Path | None = None,
                 prompt_executable_path: Path | None = None, prompt: bool = True,
                 warmup_executable_path: Path | None = None) -> list[Path]:
    """Write the hooks' launchers into *hook_dir* and the snippet that runs them into *apt_conf_dir*.

    The launchers give apt fixed command paths, whatever Python and
    virtualenv rebuildgate lives in, and say in one line what to do if
    rebuildgate was removed but the snippet was not.  The pre-install hook
    then stops apt (a check that cannot run must not be skipped silently);
    the pre-prompt hook (*prompt*) only warns: the method still judges every
    download.  With the pre-prompt hook comes the warm-up after ``apt-get
    update`` (:mod:`.warmup`; it does nothing unless the policy turns it on).
    Returns [pre-install launcher, snippet(, pre-prompt launcher, warm-up launcher)].
    """
    hook = hook_dir / HOOK_NAME
    prompt_hook = hook_dir / PROMPT_NAME
    if not _PLAIN_PATH.match(str(hook)):
        raise ValueError(f"{hook}: the hook's path may only hold letters, digits and ._+-/ "
                         f"(apt runs it through sh -c and names its options after it)")
    target = executable or hook_executable()
    hook_dir.mkdir(parents=True, exist_ok=True)
    apt_conf_dir.mkdir(parents=True, exist_ok=True)
    snippet = apt_conf_dir / SNIPPET_NAME
    _write_atomically(hook, hook_launcher_script(target, snippet), 0o755)
    made = [hook, snippet]
    warmup = hook_dir / WARMUP_NAME
    if prompt:
        _write_atomically(prompt_hook, prompt_launcher_script(prompt_executable_path or prompt_executable(), snippet),
                          0o755)
        _write_atomically(warmup, warmup_launcher_script(warmup_executable_path or warmup_executable()), 0o755)
        made += [prompt_hook, warmup]
    _write_atomically(snippet, apt_snippet(hook, prompt=prompt_hook if prompt else None,
                                           warmup=warmup if prompt else None), 0o644)
    return made


def prompt_launcher_script(target: Path, snippet: Path, by: str = WRITTEN_BY) -> str:
    """The pre-prompt hook's launcher: exit 10 stops apt, any other failure only warns.

    The hook exits 10 when it blocks (:data:`.prompt.EXIT_BLOCKED`) and 0
    otherwise, its own trouble included; any other status is a crash (a
    Python traceback exits 1), which must not stop apt: the method still
    decides every download.  A hook that ends without answering apt's hello
    lets apt go on (apt 2.6), so a missing program only warns as well.
    """
    program = shlex.quote(str(target))
    missing = (f"W: rebuildgate: {target} is missing, so the transaction is not checked before download: "
               f"reinstall rebuildgate, or remove {snippet}")
    return (
        "#!/bin/sh\n"
        f"# rebuildgate's pre-prompt hook (AptCli::Hooks), written by {by}:\n"
        "# exit 10 stops apt before any download; a crash only warns (the method decides).\n"
        + _unless_missing(program, missing, 0) +
        f'{program} "$@"\n'
        "status=$?\n"
        'case "$status" in 0|10) exit "$status" ;; esac\n'
        'echo "W: rebuildgate: the pre-prompt check failed (exit status $status); the download check decides" >&2\n'
        "exit 0\n"
    )


def warmup_launcher_script(target: Path, by: str = WRITTEN_BY) -> str:
    """The warm-up's launcher: starts it in the background and returns at once.

    apt waits for ``Post-Invoke-Success`` commands; the warm-up waits for
    rebuilders.  So it runs in its own session (a Ctrl-C at apt's terminal
    does not reach it), with none of apt's file descriptors, and its
    trouble never fails ``apt-get update``.
    """
    program = shlex.quote(str(target))
    return (
        "#!/bin/sh\n"
        f"# rebuildgate's warm-up after apt-get update (APT::Update::Post-Invoke-Success), written by {by}:\n"
        "# evidence for upgradable packages, fetched in the background when the policy says [fetch] warm_up = true.\n"
        f"[ -x {program} ] || exit 0\n"
        f"setsid {program} </dev/null >/dev/null 2>&1 &\n"
        "exit 0\n"
    )


def hook_launcher_script(target: Path, snippet: Path, by: str = WRITTEN_BY) -> str:
    program = shlex.quote(str(target))
    missing = (f"E: rebuildgate: {target} is missing, so packages cannot be checked before dpkg: reinstall "
               f"rebuildgate, or remove {snippet} to stop checking")
    return (
        "#!/bin/sh\n"
        f"# rebuildgate's DPkg::Pre-Install-Pkgs hook, written by {by}:\n"
        "# apt runs it right before dpkg, and stops if it exits non-zero.\n"
        + _unless_missing(program, missing, 2) +
        f'exec {program} "$@"\n'
    )


def _unless_missing(program: str, message: str, status: int) -> str:
    """Shell lines that print *message* and exit *status* when *program* (quoted) is gone."""
    return (f"if [ ! -x {program} ]; then\n"
            f"    echo {shlex.quote(message)} >&2\n"
            f"    exit {status}\n"
            "fi\n")


def apt_snippet(hook: Path, by: str = WRITTEN_BY, prompt: Path | None = None, warmup: Path | None = None) -> str:
    """The apt.conf.d snippet: run *hook* before dpkg, with protocol version 3, and *prompt*
    before the Y/n prompt.

    Version 3 gives apt's configuration (so ``-o Rebuildgate::Policy=...``
    reaches the hook) and each package's name, versions and arch with its
    file.  apt 2.6 reads the version from ``DPkg::Tools::Options::<command>::Version``.
    ``AptCli::Hooks::Install`` and ``::Upgrade`` are the JSON hooks of
    ``apt`` and ``apt-get`` install/remove and upgrade/dist-upgrade.
    """
    text = (
        "// rebuildgate: every .deb apt hands to dpkg is checked first\n"
        f"// (written by {by}; see rebuildgate's apt_transport/README.md).\n"
        f'DPkg::Pre-Install-Pkgs {{ "{hook}"; }};\n'
        f'DPkg::Tools::Options::{hook}::Version "3";\n'
    )
    if prompt is not None:
        text += (
            "// ... and the whole transaction before the Y/n prompt and any download.  apt also runs it\n"
            "// after a transaction that removed rebuildgate itself: a launcher no longer there is no error.\n"
            f'AptCli::Hooks::Install {{ "{_if_present(prompt)}"; }};\n'
            f'AptCli::Hooks::Upgrade {{ "{_if_present(prompt)}"; }};\n'
        )
    if warmup is not None:
        text += (
            "// After apt-get update: evidence for upgradable packages into the cache, in the background\n"
            "// (only with [fetch] warm_up = true in the policy).\n"
            f'APT::Update::Post-Invoke-Success {{ "{_if_present(warmup)}"; }};\n'
        )
    return text


def private_methods_dir(methods_dir: Path, executable: Path | None = None) -> Path:
    """A methods dir with links to all of apt's methods plus ours (for a private APT_CONFIG)."""
    methods_dir.mkdir(parents=True, exist_ok=True)
    for method in sorted(APT_METHODS.iterdir()):
        link = methods_dir / method.name
        if not (link.is_symlink() or link.exists()):
            link.symlink_to(method)
    install_method(methods_dir, executable)
    return methods_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebuildgate.apt.install", description=__doc__.splitlines()[0])
    parser.add_argument("methods_dir", type=Path)
    parser.add_argument("--with-apt-methods", action="store_true",
                        help="also link every method of /usr/lib/apt/methods (for a private APT_CONFIG); "
                             "the hook is then installed only with --apt-conf-dir")
    parser.add_argument("--apt-conf-dir", type=Path,
                        help=f"where apt reads its snippets, Dir::Etc::Parts (default {APT_CONF_DIR})")
    parser.add_argument("--hook-dir", type=Path,
                        help=f"where the hook's launcher goes (default {HOOK_DIR}; with --with-apt-methods "
                             f"the methods directory)")
    args = parser.parse_args(argv)
    if args.with_apt_methods:
        private_methods_dir(args.methods_dir)
    else:
        install_method(args.methods_dir)
    print(f"installed rebuildgate methods in {args.methods_dir}")
    if args.apt_conf_dir or not args.with_apt_methods:
        hook_dir = args.hook_dir or (args.methods_dir if args.with_apt_methods else HOOK_DIR)
        try:
            hook, snippet, prompt, warmup = install_hook(hook_dir, args.apt_conf_dir or APT_CONF_DIR)
        except ValueError as e:
            parser.error(str(e))
        print(f"installed the pre-install hook {hook}, the pre-prompt hook {prompt} and the warm-up {warmup}, "
              f"run by apt through {snippet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
