"""rebuildgate: install a package only if M of N trusted rebuilders attest it.

The modules, one concern each (modelled on python-tuf's ngclient):

* :mod:`rebuildgate.policy`   - load and validate the admin's TOML policy
* :mod:`rebuildgate.repoid`   - the repository id every front end gives, and patterns on it
* :mod:`rebuildgate.evidence` - parse documents and check signatures
* :mod:`rebuildgate.decide`   - the M-of-N rule, pure, no I/O
* :mod:`rebuildgate.fetch`    - parallel HTTP and file evidence sources: deadlines, budgets, cache, bundle
* :mod:`rebuildgate.http`     - the small strict HTTP/1.1 client behind it (``HttpClient.get(url, deadline)``)
* :mod:`rebuildgate.proxy`    - which proxy an evidence URL takes (the package manager's rules)
* :mod:`rebuildgate.layouts`  - where each rebuilder layout keeps a package's evidence
* :mod:`rebuildgate.cache`    - on-disk cache of fetched documents
* :mod:`rebuildgate.verify`   - ties them together; the batch API front ends call
* :mod:`rebuildgate.cli`      - the ``rebuildgate`` command
* :mod:`rebuildgate.explain`  - ``check-config --explain``: what the policy does to one repository
* :mod:`rebuildgate.aptsources` - sources.list entries, read for ``--explain``
"""

__version__ = "0.1.0"
