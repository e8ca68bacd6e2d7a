"""The only place that talks rtnetlink (through pyroute2).

One ``IPRoute`` per action, opened on the first change: importing pyroute2
alone costs ~0.12 s, so actions with nothing to change never pay it.
Kernel errnos are translated here, once, into one-line ``VnmError`` messages.

Supported pyroute2: 0.7 (Debian 12) to 0.9 (PyPI); ``tests/functional/netlink/test_pyroute2_contract.py``
pins the calls and error codes relied on.
"""

import errno

from vnmlib.errors import VnmError

_ERRNO_HINTS = {
    errno.EEXIST: "already exists",
    errno.ENODEV: "no such device",
    errno.ENOENT: "not found",
    errno.EPERM: "operation not permitted (run as root, or through sudo: see README)",
    errno.EBUSY: "device or resource busy",
    errno.ERANGE: "value out of range",
    errno.EINVAL: "invalid argument",
}

# BRIDGE_VLAN_INFO_* flags of <linux/if_bridge.h>
VLAN_INFO_PVID = 0x2
VLAN_INFO_UNTAGGED = 0x4


def describe_errno(code, feature=None):
    if code == errno.EOPNOTSUPP:
        return f"kernel lacks {feature}" if feature else "operation not supported by the kernel"
    return _ERRNO_HINTS.get(code) or errno.errorcode.get(code, f"errno {code}")


class Netlink:
    def __init__(self):
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        self._error = NetlinkError
        self.ipr = IPRoute()

    def close(self):
        self.ipr.close()

    def _call(self, what, feature, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except self._error as exc:
            raise VnmError(f"{what}: {describe_errno(exc.code, feature)}") from None

    def index(self, name):
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise VnmError(f"link {name} does not exist")
        return found[0]

    def create_bridge(self, name, attrs):
        opts = "".join(f" {k}={v}" for k, v in attrs.items())
        self._call(f"cannot create bridge {name}{opts}", "the bridge module",
                   self.ipr.link, "add", ifname=name, kind="bridge", **attrs)

    def set_bridge(self, name, attrs, feature=None):
        self._call(f"cannot set {attrs} on bridge {name}", feature,
                   self.ipr.link, "set", index=self.index(name), kind="bridge", **attrs)

    def create_link(self, spec):
        """Create the VLAN/VXLAN device ``spec`` describes (:mod:`vnmlib.linux.vlan_link`)."""
        module = "the 8021q module" if spec.kind == "vlan" else "the vxlan module"
        self._call(f"cannot create {spec.kind} device {spec.name}", module,
                   self.ipr.link, "add", **spec.netlink_args(self.index(spec.phydev)))

    def set_mtu(self, name, mtu):
        self._call(f"cannot set mtu {mtu} on {name}", None,
                   self.ipr.link, "set", index=self.index(name), mtu=mtu)

    def set_up(self, name):
        self._call(f"cannot set {name} up", None,
                   self.ipr.link, "set", index=self.index(name), state="up")

    def set_master(self, port, bridge):
        self._call(f"cannot enslave {port} to {bridge}", None,
                   self.ipr.link, "set", index=self.index(port), master=self.index(bridge))

    def set_nomaster(self, port):
        self._call(f"cannot release {port} from its bridge", None,
                   self.ipr.link, "set", index=self.index(port), master=0)

    def delete(self, name):
        self._call(f"cannot delete {name}", None, self.ipr.link, "del", index=self.index(name))

    def vlan_add(self, port, vid, flags=0):
        info = {"vid": vid, "flags": flags} if flags else {"vid": vid}
        self._call(f"cannot add VLAN {vid} to bridge port {port}", "bridge VLAN filtering",
                   self.ipr.vlan_filter, "add", index=self.index(port), vlan_info=info)

    def vlan_del(self, port, vid):
        """Remove a VID from a port; a VID that is not there is already removed."""
        try:
            self.ipr.vlan_filter("del", index=self.index(port), vlan_info={"vid": vid})
        except self._error as exc:
            if exc.code != errno.ENOENT:
                raise VnmError(f"cannot remove VLAN {vid} from bridge port {port}: "
                               f"{describe_errno(exc.code, 'bridge VLAN filtering')}") from None
