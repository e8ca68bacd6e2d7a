"""What a planner knows of the host's links: read live, plus what this action planned so far.

Planners ask a view, never :mod:`vnmlib.host.sysfs` itself, so a planner is a
function of (view, needs) and unit tests hand it a made-up host
(:class:`StaticLinks`) instead of a kernel. Only ``exists``, ``is_bridge`` and
``master`` see planned changes: those are what later steps of one action
decide on (a bridge planned a moment ago is one; a port moved is moved).
"""

from vnmlib.host import sysfs


class LinkView:
    """The links of this namespace as read through ``source`` (sysfs by default)."""

    def __init__(self, source=sysfs):
        self.source = source
        self.planned_bridges = set()
        self.planned_devices = set()  # VLAN/VXLAN devices (vnmlib.linux.vlan_bridge)
        self.planned_masters = {}

    def exists(self, name):
        return name in self.planned_bridges or self.source.exists(name)

    def is_bridge(self, name):
        return name in self.planned_bridges or self.source.is_bridge(name)

    def master(self, name):
        if name in self.planned_masters:
            return self.planned_masters[name]
        return self.source.master(name)

    def is_up(self, name):
        return self.source.is_up(name)

    def link_kind(self, name):
        return self.source.link_kind(name)

    def bridge_ports(self, bridge):
        return self.source.bridge_ports(bridge)

    def bridge_option(self, bridge, name):
        return self.source.bridge_option(bridge, name)


class StaticLinks:
    """A host described in memory, read as sysfs would be: for planners' unit tests.

    ``links`` maps a name to ``{"kind": …, "master": …, "up": bool, "options": {…}}``
    (a bridge has kind "bridge"; options are sysfs-named bridge options).
    """

    def __init__(self, links):
        self.links = links

    def exists(self, name):
        return name in self.links

    def is_bridge(self, name):
        return self.links.get(name, {}).get("kind") == "bridge"

    def is_up(self, name):
        return bool(self.links.get(name, {}).get("up"))

    def master(self, name):
        return self.links.get(name, {}).get("master")

    def link_kind(self, name):
        return self.links.get(name, {}).get("kind", "")  # sysfs: "" for plain or missing

    def bridge_ports(self, bridge):
        return sorted(n for n, link in self.links.items() if link.get("master") == bridge)

    def bridge_option(self, bridge, name):
        return self.links.get(bridge, {}).get("options", {}).get(name)
