"""What one NIC needs from Open vSwitch: its bridge, the bridge's columns, its uplink port.

ovswitch's uplink is PHYDEV (:class:`OvsNeed`); ovswitch_vxlan's is the VXLAN
device ``<PHYDEV>.<OUTER_VLAN_ID>`` (:class:`OvsVxlanNeed`). The bridge
columns (``ovs_bridge_conf`` / ``OVS_BRIDGE_CONF``) are checked here, before
anything is read or changed.
"""

import re

from vnmlib.errors import InputError
from vnmlib.linux import vlan_link
from vnmlib.model.config import merge_options
from vnmlib.model.naming import checked_vlan_device_name
from vnmlib.model.nic_need import NicNeed

# a Bridge column, or a key of one of its maps ("other_config:mac-table-size");
# patterns as text, compiled on first use (re caches them): most actions never need them
BRIDGE_COLUMN = r"[a-z_]+(:[A-Za-z0-9_.-]+)?"
BRIDGE_VALUE = r"[^\s\"'\\]+"


def bridge_options(conf, nic):
    """{column: value} set on a bridge vnm creates: ``ovs_bridge_conf`` < ``OVS_BRIDGE_CONF``.

    ``BRIDGE_TYPE=openvswitch_dpdk`` puts the bridge on the userspace
    datapath (``datapath_type=netdev``), as the reference.
    """
    merged = merge_options(conf.get("ovs_bridge_conf"), nic.get("OVS_BRIDGE_CONF"),
                           f"{nic.label}: OVS_BRIDGE_CONF", lower=False)
    if nic.get("BRIDGE_TYPE") == "openvswitch_dpdk":
        merged["datapath_type"] = "netdev"
    options = {}
    for column, value in merged.items():
        what = f"{nic.label}: OVS_BRIDGE_CONF/ovs_bridge_conf {column}"
        if not re.fullmatch(BRIDGE_COLUMN, column):
            raise InputError(f"{what}: not a bridge column name (e.g. stp_enable, "
                             "other_config:mac-table-size)")
        if value is None or value == "":
            raise InputError(f"{what}: needs a value")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not re.fullmatch(BRIDGE_VALUE, text):
            raise InputError(f"{what}: value {text!r} has spaces or quotes")
        options[column] = text
    return options


class OvsNeed(NicNeed):
    """What one NIC needs from Open vSwitch: its bridge (with columns) and uplink port."""

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        self.options = bridge_options(self.conf, nic)

    @property
    def uplink(self):
        """The port connecting the bridge to the network ("" when it has none)."""
        return self.phydev

    def plan_device(self, view):
        """Steps making the uplink device; PHYDEV is the host's, nothing to make."""
        return []

    def old_uplink(self, changed):
        """The uplink before ``update_nic``'s changes (``VNET_UPDATE``: the old values)."""
        return changed.get("PHYDEV", self.nic.phydev)


class OvsVxlanNeed(OvsNeed):
    """ovswitch_vxlan: the uplink is the VXLAN device ``<PHYDEV>.<OUTER_VLAN_ID>`` (VNI = OUTER_VLAN_ID).

    The device is vxlan's (group, TTL, MTU, ``ip_link_conf``); VLAN_ID tags the
    VM ports inside the tunnel.
    """

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        if not self.phydev:
            raise InputError(f"{nic.label}: PHYDEV is missing (the VXLAN tunnel runs over it)")
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:
            self._spec = vlan_link.vxlan_spec(self.nic, self.conf,
                                              vlan_link.phydev_addresses(self.nic),
                                              vni_attribute="OUTER_VLAN_ID")
        return self._spec

    @property
    def uplink(self):
        outer = self.nic.int_attr("OUTER_VLAN_ID", *vlan_link.VNI_RANGE)
        return checked_vlan_device_name(self.phydev, outer, f"{self.nic.label}: VXLAN device name")

    def link_names(self):
        return [self.bridge, self.phydev, self.uplink]

    def plan_device(self, view):
        return vlan_link.plan_device_link(view, self.spec)

    def owned_devices(self):
        return [self.uplink]

    def old_uplink(self, changed):
        nic = self.nic
        old_phydev = changed.get("PHYDEV", nic.phydev)
        old_outer = changed.get("OUTER_VLAN_ID", nic.get("OUTER_VLAN_ID"))
        if not old_phydev or not old_outer:
            return ""
        return checked_vlan_device_name(old_phydev, old_outer, f"{nic.label}: old VXLAN device")
