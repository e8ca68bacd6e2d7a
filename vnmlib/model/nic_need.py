"""What a NIC needs from the host, the part every bridge-making driver shares.

A need names the NIC, its configuration (the conf file with the network's
``CONF`` over it), its bridge and its uplink; the Linux-bridge
(:class:`vnmlib.linux.bridge.BridgeNeed`) and Open vSwitch
(:class:`vnmlib.ovs.need.OvsNeed`) needs add their bridge options and how
the uplink is made.
"""

from vnmlib.model.config import is_true, nic_conf


class NicNeed:
    def __init__(self, nic, conf):
        self.nic = nic
        self.conf = nic_conf(conf, nic)
        self.bridge = nic.bridge
        self.phydev = nic.phydev

    @property
    def keep_empty(self):
        return is_true(self.conf.get("keep_empty_bridge"))

    def link_names(self):
        """Every link ``pre``/``clean`` of this NIC may touch: what to lock."""
        return [self.bridge] + ([self.phydev] if self.phydev else [])

    def owned_devices(self):
        """Devices made for this network, deleted together with its bridge."""
        return []
