"""rebuildgate for DNF 4: refuse to install packages that rebuilders do not attest.

Install this file as ``<pluginpath>/rebuildgate.py`` (Debian and Fedora:
``/usr/lib/python3/dist-packages/dnf-plugins/`` resp.
``/usr/lib/python3.X/site-packages/dnf-plugins/``) and its configuration as
``<pluginconfpath>/rebuildgate.conf`` (``/etc/dnf/plugins/``)::

    [main]
    enabled = 1
    # policy = /etc/rebuildgate/policy.toml   (else $REBUILDGATE_POLICY, else this default)
    # library_path = /opt/rebuildgate/venv/lib/python3.11/site-packages
    # mode = gate        (or "collect": on a Qubes UpdateVM, see below)
    # bundle_dir = /var/lib/qubes/dom0-updates/rebuildgate   (collect mode; else the policy's [fetch] bundle)

When it runs:

* ``resolved()`` - after dependency resolution, before anything is
  downloaded - verifies every package ``install``, ``upgrade``,
  ``downgrade``, ``reinstall``, ``distro-sync`` (and obsoletes, group and
  history operations) would bring in, in one parallel batch, using the
  checksum from the repository metadata.
* ``pre_transaction()`` - after download and rpm's transaction test, before
  rpm installs anything - hashes the files: each must be the one verified,
  and packages that had no usable repository checksum (``dnf install
  ./local.rpm``, sha512 repositories) are verified now.

Removals are never blocked and never even load the policy, so a broken
policy cannot keep an admin from removing packages (or this plugin).  With
no policy file at all, and none named, the plugin warns once and checks
nothing (installing it changes nothing until a policy is written).

With ``mode = collect`` (a Qubes UpdateVM that downloads for dom0) the
plugin gates nothing: ``resolved()`` writes the evidence bundle for the
packages ``dnf --downloadonly`` is about to download (every rebuilder's
documents, exactly as served: :mod:`rebuildgate.collect`) into
``bundle_dir``, for dom0 to verify offline.  Collecting needs no keys and
blocks nothing: a failure is a warning (dom0 then finds no evidence and
blocks).  Any other ``mode`` value is an error, so a typo never turns the
gate into a collector.

``dnf install --downloadonly`` resolves first, so it is gated like an
install.  ``dnf download`` is not: it never resolves a transaction and never
calls ``resolved()``, so it fetches packages without any check.  That is
harmless by itself - downloading installs nothing - and a package fetched
that way and installed later with ``dnf install ./file.rpm`` is checked
then, in ``pre_transaction()``.

Why this file is so small and imports only ``dnf`` at module level: dnf
logs a module-level import error as "Failed loading plugin" and then
installs without the plugin, and any exception from a hook other than
``dnf.exceptions.Error`` is printed and ignored.  So the library is imported
inside the hooks, and every failure there - library missing, bad policy,
network, a bug - becomes ``dnf.exceptions.Error``: fail closed.

``/usr/bin/dnf`` runs the system Python, which does not see a virtualenv.
Installed from the packages, the plugin finds rebuildgate and the libraries
it bundles in ``/usr/lib/rebuildgate/lib`` by itself (:func:`_bundled_library`).
Otherwise ``library_path`` names a site-packages directory to use; it is added with
:func:`site.addsitedir` (so the ``.pth`` files of an editable install work)
and put in *front* of ``sys.path``: Debian's in-toto 1.3 and
securesystemslib 0.26 in ``/usr/lib/python3/dist-packages`` must not shadow
the versions the library needs.
"""

from __future__ import annotations

import dnf
import dnf.exceptions

PLUGIN_NAME = "rebuildgate"
#: rebuildgate.policy's default and environment variable (not imported: the library may be missing).
DEFAULT_POLICY = "/etc/rebuildgate/policy.toml"
POLICY_ENV = "REBUILDGATE_POLICY"
#: Marks the packages' private library directory (rebuildgate.admin.BUNDLE_MARKER).
BUNDLE_MARKER = "rebuildgate-bundle.txt"
_HINT = "nothing was installed; fix it, or bypass the gate with --disableplugin=rebuildgate"


class Rebuildgate(dnf.Plugin):
    """Blocks the transaction unless M of N rebuilders attest each package to install."""

    name = PLUGIN_NAME

    def __init__(self, base: dnf.Base, cli: dnf.cli.Cli | None) -> None:
        super().__init__(base, cli)
        self._gate = None  # rebuildgate.dnf.gate.Gate, made in the first hook that needs it
        self._warned = False  # the "no policy" warning, once per run

    # -- hooks -----------------------------------------------------------

    def resolved(self) -> None:
        if self._collecting():
            self._collect()
            return
        self._guard("resolved", "checking packages before download")

    def pre_transaction(self) -> None:
        if self._collecting():
            return  # collect mode checks nothing (the machine that installs verifies)
        self._guard("pre_transaction", "checking package files before installing")

    def _collecting(self) -> bool:
        """``mode = collect`` in rebuildgate.conf; an unknown mode stops dnf (fail closed)."""
        mode = (self._option("mode") or "gate").lower()
        if mode not in ("gate", "collect"):
            raise dnf.exceptions.Error(f"rebuildgate: mode = {mode[:40]!r} in {PLUGIN_NAME}.conf is neither "
                                       f"'gate' nor 'collect'; {_HINT}")
        return mode == "collect"

    def _collect(self) -> None:
        """Write the evidence bundle of the install set; every failure is only a warning."""
        import logging

        log = logging.getLogger("dnf.plugin.rebuildgate")
        try:
            packages = self._install_set()
            if not packages or not self._configured():
                return
            policy, library_path = self._settings()
            gate_module = _import_library(library_path)
            report = gate_module.collect_transaction(policy, gate_module.dnf_proxy_choice(self.base.conf), packages,
                                                     self._option("bundle_dir"))
            log.info("rebuildgate: %s", report.summary())
            if not report.complete:
                log.warning("rebuildgate: some evidence could not be collected (the machine that installs "
                            "will find it missing): %d failed", len(report.by_status("error")) + len(report.failures))
        except Exception as e:  # noqa: BLE001 - collecting never blocks; the verifying side does
            detail = " ".join(str(e).split()) or type(e).__name__
            log.warning("rebuildgate: collecting evidence failed: %s: %s", type(e).__name__, detail[:600])

    # -- plumbing --------------------------------------------------------

    def _install_set(self) -> list[dnf.package.Package]:
        """Packages the transaction installs, upgrades, downgrades or reinstalls."""
        transaction = self.base.transaction
        if transaction is None:
            return []
        return sorted(transaction.install_set, key=str)

    def _guard(self, hook: str, what: str) -> None:
        """Run the gate's *hook* on the install set; anything that goes wrong stops dnf (fail closed)."""
        import sys

        try:
            packages = self._install_set()
            if packages and self._configured():  # removals only: nothing to check, and no policy needed
                getattr(self._load_gate(), hook)(packages)
        except dnf.exceptions.Error:
            raise
        except Exception as e:  # noqa: BLE001 - every failure must block, not be logged and ignored
            gate = sys.modules.get("rebuildgate.dnf.gate")
            if gate is not None and isinstance(e, gate.Blocked):
                raise dnf.exceptions.Error(str(e)) from None  # the table of blocked packages
            detail = " ".join(str(e).split()) or type(e).__name__
            errors = sys.modules.get("rebuildgate.errors")
            known = (_NoLibrary, *((errors.RebuildgateError,) if errors else ()),
                     *((gate.LibraryError,) if gate else ()))
            if not isinstance(e, known):  # a bug or an unexpected failure: say what it was
                detail = f"{type(e).__name__}: {detail}"
            raise dnf.exceptions.Error(f"rebuildgate: {what} failed: {detail[:600]}; {_HINT}") from None

    def _configured(self) -> bool:
        """False (with one warning) when no policy exists and none is named: not set up yet.

        Installing rebuildgate must not change what dnf does before the admin
        writes a policy (``rebuildgate init``), as with apt's pre-install
        hook.  A policy that is named (``policy =``, ``$REBUILDGATE_POLICY``)
        but missing is an error, like any broken policy.
        """
        import logging
        import os

        policy, _ = self._settings()
        if policy or os.environ.get(POLICY_ENV) or os.path.lexists(DEFAULT_POLICY):
            return True
        if not self._warned:
            self._warned = True
            logging.getLogger("dnf").warning(
                "rebuildgate: no policy file %s: packages are not checked (write the policy, e.g. with "
                "rebuildgate init, to turn rebuildgate on)", DEFAULT_POLICY)
        return False

    def _settings(self) -> tuple[str | None, str | None]:
        """``policy`` and ``library_path`` from ``[main]`` of rebuildgate.conf."""
        return self._option("policy"), self._option("library_path")

    def _option(self, key: str) -> str | None:
        """One value from ``[main]`` of rebuildgate.conf (None when unset or empty)."""
        parser = self.read_config(self.base.conf)
        value = parser.getValue("main", key) if parser.has_option("main", key) else ""
        return value.strip() or None

    def _load_gate(self) -> rebuildgate.dnf.gate.Gate:  # noqa: F821 - imported in the hook
        """The gate for this dnf run: library imported, policy loaded (once)."""
        if self._gate is None:
            policy, library_path = self._settings()
            gate_module = _import_library(library_path)
            self._gate = gate_module.Gate.load(policy, gate_module.dnf_proxy_choice(self.base.conf))
        return self._gate


def _bundled_library() -> str | None:
    """The private library the rebuildgate package installs, found from where this plugin is.

    The packages put this file in dnf's plugin directory (Fedora
    ``/usr/lib/python3.X/site-packages/dnf-plugins``, Debian
    ``/usr/lib/python3/dist-packages/dnf-plugins``) and rebuildgate with the
    libraries it needs in ``/usr/lib/rebuildgate/lib``: three levels up and
    across.  Relative, so that an ``--installroot`` holding both (as the
    tests use) finds its own copy.  A directory without the bundle's marker
    file is not used.
    """
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, os.pardir, os.pardir, os.pardir, "rebuildgate", "lib"))
    return candidate if os.path.isfile(os.path.join(candidate, BUNDLE_MARKER)) else None


class _NoLibrary(Exception):
    """The rebuildgate library cannot be imported (message says why and where)."""


def _import_library(library_path: str | None) -> types.ModuleType:  # noqa: F821
    """Make ``rebuildgate`` importable from *library_path* and import the gate module.

    The directory goes through :func:`site.addsitedir` (processing ``.pth``
    files, which is how an editable install or a venv's extras are found);
    every ``sys.path`` entry and import finder that adds is then moved to
    the front, ahead of the system's dist-packages.
    """
    import os
    import site
    import sys

    library_path = library_path or _bundled_library()
    if library_path:
        if not os.path.isdir(library_path):
            raise _NoLibrary(f"library_path {library_path} (in {PLUGIN_NAME}.conf) is not a directory")
        path_before, finders_before = list(sys.path), list(sys.meta_path)
        site.addsitedir(library_path)
        front = [p for p in sys.path if p not in path_before]
        if not front:  # already present (second hook): still make sure it comes first
            front = [p for p in sys.path if os.path.abspath(p) == os.path.abspath(library_path)]
        sys.path[:] = front + [p for p in sys.path if p not in front]
        finders = [f for f in sys.meta_path if f not in finders_before]
        sys.meta_path[:] = finders + [f for f in sys.meta_path if f not in finders]
    try:
        from rebuildgate.dnf import gate
    except ImportError as e:
        where = (f"library_path = {library_path}" if library_path
                 else "no library_path set in rebuildgate.conf and no packaged library beside the plugin")
        raise _NoLibrary(f"the rebuildgate library cannot be imported ({e}; {where}; "
                         f"Python {sys.version.split()[0]} at {sys.executable})") from None
    gate.check_environment()
    return gate
