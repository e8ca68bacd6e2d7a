"""One module per driver; each exposes ``ACTIONS = {action: handler}``.

Handlers take a :class:`vnmlib.contract.context.Context`. Those marked with
:func:`privileged` change the host and run as root (through the sudo helper
when the caller is not root); the others only validate and run hooks.
"""

import importlib

from vnmlib.errors import VnmError

# OpenNebula's VN_MAD names -> module names (802.1Q is not a Python identifier).
DRIVER_MODULES = {
    "dummy": "dummy",
    "bridge": "bridge",
    "fw": "fw",
    "802.1Q": "vlan8021q",
    "vxlan": "vxlan",
    "ovswitch": "ovswitch",
    "ovswitch_vxlan": "ovswitch_vxlan",
    "elastic": "elastic",
    "nodeport": "nodeport",
    "ovn": "ovn",
}


def load_driver(name):
    module = DRIVER_MODULES.get(name)
    if module is None:
        raise VnmError(f"unknown driver {name!r} (known: {', '.join(sorted(DRIVER_MODULES))})")
    return importlib.import_module(f"{__name__}.{module}")


def privileged(handler):
    handler.privileged = True
    return handler


def with_qos(update_nic):
    """``update_nic`` that also sets the NICs' bandwidth through libvirt, as its caller
    (:mod:`vnmlib.drivers.qos`; the ``as_caller`` of :mod:`vnmlib.contract.action`)."""
    def as_caller(ctx):
        from vnmlib.drivers import qos  # virsh's modules: only update_nic pays for them

        return qos.update_nic(ctx)

    update_nic.as_caller = as_caller
    return update_nic


def security_groups():
    """The firewall engine, imported when an action needs it.

    Importing it (subprocess, shutil…) costs ~14 ms, a third of a warm
    ``pre``'s budget: only the protected drivers' ``pre`` (which protects the
    NICs before their taps exist) pays it.
    """
    from vnmlib import firewall

    return firewall


def succeed(ctx):
    """Actions with nothing to do on this driver: exit 0, hooks still run."""


def action_table(pre, post, clean, update_sg, update_nic, **more):
    """A driver's ``ACTIONS``: the five VM actions, ``more`` (elastic's remote
    ones), and vnet_create / vnet_delete, which no driver here has work for."""
    return {"pre": pre, "post": post, "clean": clean, "update_sg": update_sg,
            "update_nic": update_nic, **more, "vnet_create": succeed, "vnet_delete": succeed}
