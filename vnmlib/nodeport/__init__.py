"""The nodeport driver's parts: a range of the host's TCP ports forwarded to a VM (reference §2.8).

- :mod:`.targets`: which NICs an action handles, their addresses and port
  ranges validated;
- :mod:`.host`: the nat rules, the check that no other NIC forwards the same
  host ports, and ``post``/``clean`` on the routed mechanism shared with
  elastic (:mod:`vnmlib.elastic.routed`).
"""
