"""rebuildgate: install a package only if M of N trusted rebuilders attest it.

The modules, one concern each (modelled on python-tuf's ngclient):

* :mod:`rebuildgate.policy`   - load and validate the admin's TOML policy
* :mod:`rebuildgate.repoid`   - the repository id every front end gives, and patterns on it
* :mod:`rebuildgate.evidence` - parse documents and check signatures
* :mod:`rebuildgate.decide`   - the M-of-N rule, pure, no I/O
* :mod:`rebuildgate.fetch`    - parallel HTTP and file evidence sources
* :mod:`rebuildgate.cache`    - on-disk cache of fetched documents
* :mod:`rebuildgate.verify`   - ties them together; the batch API front ends call
* :mod:`rebuildgate.cli`      - the ``rebuildgate`` command
* :mod:`rebuildgate.explain`  - ``check-config --explain``: what the policy does to one repository
* :mod:`rebuildgate.aptsources` - sources.list entries, read for ``--explain``
"""

__version__ = "0.1.0"
