"""The actions of the VLAN-backed drivers (802.1Q, vxlan): one set, two device kinds.

They differ in the device (the need: :class:`~vnmlib.linux.vlan_bridge.VlanNeed`
or :class:`~vnmlib.linux.vlan_bridge.VxlanNeed`) and in whether the network has
bridge VLAN filters (802.1Q: QinQ ``CVLANS`` and ``VLAN_TAGGED_ID`` trunks;
vxlan: none, reference §2.5).
"""

from vnmlib.linux import vlan_bridge
from vnmlib.drivers import action_table, privileged, security_groups, with_qos


def actions(need_type, vlan_filters):
    """``ACTIONS`` for a driver whose NICs need ``need_type``."""

    @privileged
    def pre(ctx):
        # the links, then the NICs' protection, before the taps exist
        security_groups().pre(ctx, lambda: vlan_bridge.attach(ctx, need_type),
                              lambda: vlan_bridge.release(ctx, need_type))

    @privileged
    def post(ctx):
        if vlan_filters:
            vlan_bridge.post_filters(ctx, need_type)
        security_groups().post(ctx)

    @privileged
    def clean(ctx):
        # bridge and device first, then the rules (the reference's order; vxlan's
        # reference removed the rules twice, once is enough)
        vlan_bridge.release(ctx, need_type)  # with the bridge's TProxy
        security_groups().clean(ctx)

    @privileged
    def update_sg(ctx):
        security_groups().update_sg(ctx)

    @with_qos
    @privileged
    def update_nic(ctx):
        vlan_bridge.update(ctx, need_type, filters=vlan_filters)

    return action_table(pre, post, clean, update_sg, update_nic)
