"""rebuildgate's DNF 4 front end (import name ``rebuildgate.dnf``).

* :mod:`rebuildgate.dnf.plugin` - the file installed into dnf's pluginpath
  as ``rebuildgate.py``; imports only ``dnf`` at module level.
* :mod:`rebuildgate.dnf.gate` - the hooks' work, in library terms; imported
  by the plugin inside the hooks.
"""
