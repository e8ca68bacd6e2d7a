"""802.1Q: a bridge per network with the VLAN device ``<PHYDEV>.<VLAN_ID>`` as uplink (reference §2.4).

``post`` adds the QinQ (``CVLANS``) / trunk (``VLAN_TAGGED_ID``) bridge VLAN
filters, then the security groups, exactly as fw; ``clean`` removes device and
bridge together when no guest is left, then the NIC's rules.
"""

from vnmlib.drivers import vlan_backed
from vnmlib.linux.vlan_bridge import VlanNeed

ACTIONS = vlan_backed.actions(VlanNeed, vlan_filters=True)
