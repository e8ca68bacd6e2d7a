"""What a planner knows of the host's links: read live, plus what this action planned so far.

Planners ask a view, never :mod:`vnmlib.host.sysfs` or the netlink reader
themselves, so a planner is a function of (view, needs) and unit tests hand
it a made-up host (:class:`StaticLinks`) instead of a kernel. Only ``exists``, ``is_bridge`` and
``master`` see planned changes: those are what later steps of one action
decide on (a bridge planned a moment ago is one; a port moved is moved).
"""

from vnmlib.host import sysfs


class KernelLinks:
    """This namespace's links as the kernel tells: sysfs for the cheap facts, rtnetlink
    (:func:`vnmlib.host.netlink.reader.link`) for a link's IDs, lower device and MTU."""

    exists = staticmethod(sysfs.exists)
    is_bridge = staticmethod(sysfs.is_bridge)
    is_up = staticmethod(sysfs.is_up)
    master = staticmethod(sysfs.master)
    link_kind = staticmethod(sysfs.link_kind)
    bridge_ports = staticmethod(sysfs.bridge_ports)
    bridge_option = staticmethod(sysfs.bridge_option)

    @staticmethod
    def link(name):
        # imported when a planner needs details: a bridge-only pre never does
        from vnmlib.host.netlink import reader

        return reader.link(name)


class LinkView:
    """The links of this namespace as read through ``source`` (the kernel by default)."""

    def __init__(self, source=KernelLinks):
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

    def link(self, name):
        """The link's details (:class:`vnmlib.host.netlink.reader.Link`), or None."""
        return self.source.link(name)


class StaticLinks:
    """A host described in memory, read as sysfs would be: for planners' unit tests.

    ``links`` maps a name to ``{"kind": …, "master": …, "up": bool, "options": {…}}``
    (a bridge has kind "bridge"; options are sysfs-named bridge options), and
    for :meth:`link` optionally ``mtu``, ``data`` (IFLA_INFO_DATA) and ``lower``
    (the name of the device it sits on); ifindexes are the entries' positions.
    """

    def __init__(self, links):
        self.links = links
        self.index = {name: number for number, name in enumerate(links, 1)}

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

    def link(self, name):
        from vnmlib.host.netlink.reader import Link

        entry = self.links.get(name)
        if entry is None:
            return None
        return Link(name, self.index[name], bool(entry.get("up")), entry.get("mtu", 1500),
                    self.index.get(entry.get("lower")), self.index.get(entry.get("master")),
                    entry.get("kind", ""), entry.get("data", {}))
