"""The actions of the Open vSwitch drivers (ovswitch, ovswitch_vxlan): one set, two uplinks.

They differ in the uplink (:class:`~vnmlib.ovs.need.OvsNeed`: PHYDEV, or
:class:`~vnmlib.ovs.need.OvsVxlanNeed`: the VXLAN device) and in which
``update_nic`` changes swap it.
"""

from vnmlib.ovs import actions as ovs_actions
from vnmlib.drivers import action_table, privileged, with_qos


def actions(need_type, uplink_keys):
    """``ACTIONS`` for a driver whose NICs need ``need_type``."""

    @privileged
    def pre(ctx):
        ovs_actions.attach(ctx, need_type)

    @privileged
    def post(ctx):
        ovs_actions.configure_ports(ctx, need_type)

    @privileged
    def clean(ctx):
        ovs_actions.release(ctx, need_type)

    @privileged
    def update_sg(ctx):
        # without :ovs_security_groups: it exits 1, as the reference's: the VM's
        # security groups would silently not apply (the anti-spoofing flows stay)
        ovs_actions.update_security_groups(ctx, need_type)

    @with_qos
    @privileged
    def update_nic(ctx):
        ovs_actions.update(ctx, need_type, uplink_keys)

    return action_table(pre, post, clean, update_sg, update_nic)
