"""ovswitch: an Open vSwitch bridge per network with PHYDEV as uplink (reference §2.6).

VM ports get VLAN_ID as their VLAN (VLAN_TAGGED_ID trunks, CVLANS QinQ), the
MTU, and the OpenFlow anti-spoofing pipeline (tables 0 -> 10 -> 20). Security
groups only with ``:ovs_security_groups:`` (conntrack flows, vnmlib.ovs.sg_flows);
without it update_sg fails, as the reference's.
"""

from vnmlib.ovs.need import OvsNeed
from vnmlib.drivers import ovs_backed

ACTIONS = ovs_backed.actions(OvsNeed, uplink_keys={"PHYDEV"})
