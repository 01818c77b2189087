"""The APT method ``rebuildgate+http(s)://`` / ``rebuildgate+file://``.

apt runs ``<Dir::Bin::Methods>/rebuildgate+http`` for every sources.list line
written ``deb rebuildgate+http://...``.  The method starts apt's own method
for the inner scheme (``http``), relays messages both ways, and holds back
``201 URI Done`` for a package until :mod:`rebuildgate.verify` says that M of
N rebuilders attest its exact hash.  Modules, one concern each:

* :mod:`.protocol` - the message format apt and its methods speak
* :mod:`.aptconfig` - the ``601 Configuration`` apt sends, read with apt's rules
* :mod:`.inner`     - apt's own method for the inner scheme, as a child process
* :mod:`.sandbox`   - dropping root the way apt's methods do
* :mod:`.records`   - which package a download is, from apt's own records
* :mod:`.gate`      - per-download state: when to verify, what to answer
* :mod:`.entry`     - the executable: introduces itself to apt before the heavy imports
* :mod:`.method`    - ``main()``: wiring, signals, shutdown
* :mod:`.install`   - put the method (and its ``+scheme`` links) into a methods dir,
  and the pre-install hook into apt's configuration

The ``DPkg::Pre-Install-Pkgs`` hook checks every file apt hands to dpkg,
whatever brought it there (the archive cache, ``./x.deb``):

* :mod:`.hookinput`  - what apt writes to a version 3 hook
* :mod:`.origins`    - where apt thinks a file came from: gated, plain or nowhere
* :mod:`.preinstall` - the hook: read the files, ask the library, answer apt

The pre-prompt hook (``AptCli::Hooks``) judges the whole transaction before
the Y/n prompt and any download:

* :mod:`.jsonhook`     - apt's JSON hook protocol (imports only ``json``, ``os``, ``select``)
* :mod:`.prompt_entry` - the executable: apt's conversation; the rest only for a pre-prompt notification
* :mod:`.prompt`       - the check: apt's records, one ``verify_many``, the table

No trust decision is made here: this package only translates between apt
and the library.
"""
