"""802.1Q: a bridge per network with the VLAN device ``<PHYDEV>.<VLAN_ID>`` as uplink (reference §2.4).

``post`` adds the QinQ (``CVLANS``) / trunk (``VLAN_TAGGED_ID``) bridge VLAN
filters, then the security groups, exactly as fw; ``clean`` removes device and
bridge together when no guest is left, then the NIC's rules.
"""

from .. import vlan_bridge
from ..vlan_link import vlan_spec
from . import privileged, security_groups, succeed


class VlanNeed(vlan_bridge.VlanBridgeNeed):
    make_spec = staticmethod(vlan_spec)


@privileged
def pre(ctx):
    vlan_bridge.attach(ctx, VlanNeed)


@privileged
def post(ctx):
    vlan_bridge.post_filters(ctx, VlanNeed)
    security_groups().post(ctx)


@privileged
def clean(ctx):
    vlan_bridge.release(ctx, VlanNeed)
    security_groups().clean(ctx)


@privileged
def update_sg(ctx):
    security_groups().update_sg(ctx)


@privileged
def update_nic(ctx):
    vlan_bridge.update(ctx, VlanNeed, filters=True)


ACTIONS = {
    "pre": pre,
    "post": post,
    "clean": clean,
    "update_sg": update_sg,
    "update_nic": update_nic,
    "vnet_create": succeed,
    "vnet_delete": succeed,
}
