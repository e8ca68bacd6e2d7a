"""Elastic IP providers: the reference's interface, as Python plugins.

A provider is a class built with ``(name, settings, host)`` (``settings``: its
mapping from elastic.yaml, host entry overrides included) with

- ``assign(ip, external_ip, opts)`` / ``unassign(ip, external_ip, opts)``:
  on the front-end, make the provider send ``external_ip`` to this host for
  the VM's private ``ip`` (and undo it); ``opts`` holds the NIC's attributes
  (``AWS_ALLOCATION_ID``…). Return on success, raise on failure (the message
  ends up in the action's ERROR line). ``unassign`` of something not assigned
  succeeds.
- ``activate(ip, external_ip, opts)`` (optional): on the host, a list of
  :mod:`vnmlib.elastic.hostops` operations; ``remote_clean`` removes them.

The built-in ones are found without any installation (the synced remotes
tree has no package metadata); others through the ``vnm.elastic_providers``
entry point group of the host's and front-end's Python environment.
"""

import importlib

from vnmlib.errors import InputError, VnmError

ENTRY_POINT_GROUP = "vnm.elastic_providers"
BUILT_IN = {
    "dummy": "vnmlib.elastic.providers.dummy:DummyProvider",
    "nat": "vnmlib.elastic.providers.nat:NatProvider",
    "aws": "vnmlib.elastic.providers.aws:AwsProvider",
}


class Provider:
    """Base class for providers (subclassing it is optional; the methods are the interface)."""

    def __init__(self, name, settings, host):
        self.name = name
        self.settings = settings
        self.host = host

    def setting(self, key, default=None, required=False):
        value = self.settings.get(key)
        if value in (None, ""):
            if required:
                raise InputError(f"elastic provider {self.name!r} needs the setting {key!r}")
            return default
        return value

    def assign(self, ip, external_ip, opts):
        raise NotImplementedError

    def unassign(self, ip, external_ip, opts):
        raise NotImplementedError

    def activate(self, ip, external_ip, opts):
        return []


def _plugin(driver):
    from importlib.metadata import entry_points  # scans sys.path: only for non-built-ins

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == driver:
            return entry.value
    known = sorted(set(BUILT_IN) | {e.name for e in entry_points(group=ENTRY_POINT_GROUP)})
    raise InputError(f"unknown elastic provider driver {driver!r} (known: {', '.join(known)})")


def create(settings):
    """The provider object for :class:`vnmlib.elastic.settings.HostSettings`."""
    target = BUILT_IN.get(settings.driver) or _plugin(settings.driver)
    module_name, _, attribute = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise VnmError(f"elastic provider driver {settings.driver!r} ({target}) cannot be "
                       f"loaded: {exc}") from None
    return cls(settings.provider, settings.values, settings.host)
