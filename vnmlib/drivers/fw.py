"""fw: the bridge driver plus security groups and MAC/IP anti-spoofing (reference §2.3)."""

from . import bridge, privileged, security_groups, succeed

pre = bridge.pre  # identical to bridge/pre (reference NoVLANDriver)
update_nic = bridge.update_nic


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


ACTIONS = {
    "pre": pre,
    "post": post,
    "clean": clean,
    "update_sg": update_sg,
    "update_nic": update_nic,
    "vnet_create": succeed,
    "vnet_delete": succeed,
}
