"""The elastic driver's parts: public IPs of a provider routed to VMs (reference §6, §2.8).

- :mod:`.targets`: which NICs/aliases an action handles, validated;
- :mod:`.settings`: ``etc/vnm/elastic.yaml``, the provider and transport of a host;
- :mod:`.providers`: the provider plugins (built in: dummy, nat, aws; others
  through the ``vnm.elastic_providers`` entry point group) and :mod:`.hostops`,
  the host operations they may ask for;
- :mod:`.host`: the host side (routed security groups, ``/32`` routes, proxy
  ARP, the provider's operations), applied and rolled back as steps;
- :mod:`.transport`: the front-end reaching the host (OpenSSH, or locally).
"""
