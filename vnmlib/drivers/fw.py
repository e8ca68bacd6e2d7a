"""fw: the bridge driver plus security groups and MAC/IP anti-spoofing (reference §2.3)."""

from vnmlib.drivers import action_table, bridge, privileged, security_groups

update_nic = bridge.update_nic


@privileged
def pre(ctx):
    # bridge/pre (reference NoVLANDriver), then the NICs' protection, before the taps exist
    security_groups().pre(ctx, lambda: bridge.pre(ctx), lambda: bridge.clean(ctx))


@privileged
def post(ctx):
    security_groups().post(ctx)


@privileged
def clean(ctx):
    # the reference's order: the bridge (when no guest is left), then the rules
    bridge.clean(ctx)
    security_groups().clean(ctx)


@privileged
def update_sg(ctx):
    security_groups().update_sg(ctx)


ACTIONS = action_table(pre, post, clean, update_sg, update_nic)
