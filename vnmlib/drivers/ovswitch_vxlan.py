"""ovswitch_vxlan: ovswitch with the VXLAN device ``<PHYDEV>.<OUTER_VLAN_ID>`` as uplink (reference §2.7).

VNI = OUTER_VLAN_ID (multicast group, TTL, MTU and ip_link_conf as the vxlan
driver); VLAN_ID tags the VM ports inside the tunnel. Security groups as ovswitch's
(``:ovs_security_groups:``).
"""

from vnmlib.ovs.need import OvsVxlanNeed
from vnmlib.drivers import ovs_backed

ACTIONS = ovs_backed.actions(OvsVxlanNeed, uplink_keys={"PHYDEV", "OUTER_VLAN_ID"})
