"""vxlan: a bridge per network with the VXLAN device ``<PHYDEV>.<VLAN_ID>`` as uplink (reference §2.5).

VNI = VLAN_ID. Multicast mode joins group ``vxlan_mc`` + VNI on PHYDEV; EVPN
mode (``VXLAN_MODE=evpn``) leaves flooding and learning to the control plane
(FRR: see docs/drivers/vxlan.md) with the TEP given as ``dev PHYDEV`` or ``local <PHYDEV's
address>``. Security groups as fw; no bridge VLAN filters.
"""

from vnmlib.drivers import vlan_backed
from vnmlib.linux.vlan_bridge import VxlanNeed

ACTIONS = vlan_backed.actions(VxlanNeed, vlan_filters=False)
