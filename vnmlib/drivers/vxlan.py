"""vxlan: a bridge per network with the VXLAN device ``<PHYDEV>.<VLAN_ID>`` as uplink (reference §2.5).

VNI = VLAN_ID. Multicast mode joins group ``vxlan_mc`` + VNI on PHYDEV; EVPN
mode (``VXLAN_MODE=evpn``) leaves flooding and learning to the control plane
(FRR: see README) with the TEP given as ``dev PHYDEV`` or ``local <PHYDEV's
address>``. Security groups as fw.
"""

from .. import vlan_bridge
from ..netlink import reader
from ..vlan_link import vxlan_spec
from . import privileged, security_groups, succeed


def _spec(nic, conf):
    def phydev_addresses():
        link = reader.link(nic.phydev)
        return reader.addresses(link.index) if link else []

    return vxlan_spec(nic, conf, phydev_addresses)


class VxlanNeed(vlan_bridge.VlanBridgeNeed):
    make_spec = staticmethod(_spec)


@privileged
def pre(ctx):
    vlan_bridge.attach(ctx, VxlanNeed)


@privileged
def post(ctx):
    security_groups().post(ctx)


@privileged
def clean(ctx):
    # the reference called the security-group teardown twice here; once is enough
    vlan_bridge.release(ctx, VxlanNeed)
    security_groups().clean(ctx)


@privileged
def update_sg(ctx):
    security_groups().update_sg(ctx)


@privileged
def update_nic(ctx):
    vlan_bridge.update(ctx, VxlanNeed)


ACTIONS = {
    "pre": pre,
    "post": post,
    "clean": clean,
    "update_sg": update_sg,
    "update_nic": update_nic,
    "vnet_create": succeed,
    "vnet_delete": succeed,
}
