"""nodeport: a range of the host's TCP ports forwarded to each VM (reference §2.8).

``pre`` is the bridge driver's (the reference's NoVLANDriver); ``post``
protects (routed security groups) then routes and forwards, ``clean`` undoes
exactly that, then removes the bridge as the bridge driver does.
"""

from vnmlib.drivers import action_table, bridge, privileged, security_groups, succeed


def _host():
    from vnmlib.nodeport import host

    return host


def _targets(ctx, ports=True):
    from vnmlib.nodeport import targets

    return targets.scoped(ctx.vm, ports)


@privileged
def post(ctx):
    _host().up(ctx, _targets(ctx))


@privileged
def clean(ctx):
    _host().down(ctx, _targets(ctx, ports=False))
    bridge.clean(ctx)


@privileged
def update_sg(ctx):
    security_groups().update_sg(ctx, bridged=False)


ACTIONS = action_table(bridge.pre, post, clean, update_sg, succeed)
