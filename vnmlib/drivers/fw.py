"""fw: the bridge driver plus security groups and MAC/IP anti-spoofing (reference §2.3)."""

from .. import firewall
from . import bridge, privileged, succeed

pre = bridge.pre  # identical to bridge/pre (reference NoVLANDriver)
update_nic = bridge.update_nic


@privileged
def post(ctx):
    firewall.post(ctx)


@privileged
def clean(ctx):
    # the reference's order: the bridge (when no guest is left), then the rules
    bridge.clean(ctx)
    firewall.clean(ctx)


@privileged
def update_sg(ctx):
    firewall.update_sg(ctx)


ACTIONS = {
    "pre": pre,
    "post": post,
    "clean": clean,
    "update_sg": update_sg,
    "update_nic": update_nic,
    "vnet_create": succeed,
    "vnet_delete": succeed,
}
