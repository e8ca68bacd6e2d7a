"""vnm gc: what VMs that no longer run here left behind; removed with --apply.

A VM is alive when the hypervisor lists it (``virsh list``: domains
``one-<id>``) or when ``--live`` names it. For every NIC of any other VM:
its security-group chains, jumps and ipsets (through the firewall engine,
one transaction), its Open vSwitch flows (by cookie) and port when the tap is
gone, its bridge-user records; then the bridges vnm recorded that are left
with no guest port and no record (unless ``keep_empty_bridge``). Dry run by
default.
"""

import os
import re
import shutil
import subprocess

import click

from .output import emit


GUEST_KINDS = ("tun", "veth")


def live_vms(live):
    if live is not None:
        try:
            return {int(v) for v in live.split(",") if v.strip()}
        except ValueError:
            raise click.BadParameter(f"{live!r} is not a list of VM IDs", param_hint="--live")
    virsh = shutil.which("virsh")
    if virsh is None:
        raise click.ClickException("cannot tell which VMs run here: no virsh; pass --live ID,…")
    done = subprocess.run([virsh, "-c", "qemu:///system", "list", "--name"], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise click.ClickException(f"virsh list failed: {done.stderr.strip()}; pass --live ID,…")
    return {int(m.group(1)) for m in re.finditer(r"^one-(\d+)$", done.stdout, re.M)}


def plan_gc(inv, live, conf):
    """[(vm, nic or None, what, thing)]: what gc removes, in order."""
    removals = []
    dead = [n for key, n in sorted(inv.nics.items()) if key[0] not in live]
    recorded = {b for n in inv.nics.values() for b in n.records}
    for nic in dead:
        if nic.rules or nic.ipsets:
            removals.append((nic.vm_id, nic.nic_id, "firewall", nic.base))
        if nic.ovs_flows:
            removals.append((nic.vm_id, nic.nic_id, "ovs flows", nic.base))
        if nic.ovs_port and nic.tap is None:
            removals.append((nic.vm_id, nic.nic_id, "ovs port", f"{nic.ovs_port}:{nic.base}"))
        for bridge in nic.records:
            removals.append((nic.vm_id, nic.nic_id, "record", f"{bridge}:{nic.vm_id}-{nic.nic_id}"))
    if not conf.get("keep_empty_bridge"):
        left = {b for n in inv.nics.values() if n.vm_id in live for b in n.records}
        for bridge in sorted(recorded - left):
            # any port that may be a guest keeps the bridge: taps (tun), LXC and
            # test veths, and anything named like a tap
            if bridge in inv.ovs_bridges:
                ports = inv.ovs_bridges[bridge]
                kind = "ovs bridge"
            else:
                ports = [name for name, link in inv.links.items() if link["master"] == bridge]
                kind = "bridge"
            guests = [name for name in ports if name.startswith("one-")
                      or inv.links.get(name, {}).get("kind") in GUEST_KINDS]
            if (bridge in inv.links or bridge in inv.ovs_bridges) and not guests:
                removals.append((None, None, kind, bridge))
    return removals


class _Ctx:
    """What the firewall engine needs of an action's context."""

    def __init__(self, conf, log):
        self.conf, self.log = conf, log


def apply_gc(removals, conf, log):
    from .. import firewall, ovs, ovs_flows, steps
    from ..locks import BridgeUsers, LinkLocks

    bases = [thing for _, _, what, thing in removals if what == "firewall"]
    if bases:
        firewall.apply(_Ctx(conf, log), remove=bases)
    for vm_id, nic_id, what, thing in removals:
        if what == "ovs flows":
            cookie = ovs_flows.cookie_of(vm_id, nic_id)
            for bridge in ovs.read_state().bridges:
                ovs.ofctl(["del-flows", bridge, f"cookie={cookie:#x}/-1"], f"flows of {thing}")
        elif what == "ovs port":
            bridge, port = thing.split(":")
            ovs.vsctl([["--if-exists", "del-port", bridge, port]], f"port {port}")
        elif what == "record":
            bridge, user = thing.split(":")
            with LinkLocks([bridge]):
                BridgeUsers().remove(bridge, user)
        elif what == "bridge":
            with LinkLocks([thing]):
                steps.apply([steps.DeleteLink(thing)], log)
        elif what == "ovs bridge":
            with LinkLocks([thing]):
                ovs.vsctl([["--if-exists", "del-br", thing]], f"bridge {thing}")


@click.command(name="gc")
@click.option("--apply", "do_apply", is_flag=True, help="remove what is found (default: list it)")
@click.option("--live", help="the VM IDs running here, comma-separated (default: virsh list)")
@click.option("--tree", type=click.Path(exists=True, file_okay=False),
              help="the vnm/ tree whose configuration applies")
@click.option("--json", "as_json", is_flag=True, help="the findings as JSON")
def command(do_apply, live, tree, as_json):
    """Find chains, ipsets, OVS flows and ports, records and empty vnm-made
    bridges left by VMs that no longer run here; remove them with --apply."""
    from .. import config, inventory
    from ..log import Log
    from .run import default_tree

    if os.geteuid() != 0:
        raise click.ClickException("gc reads and changes the host's firewall and links: run it "
                                   "as root")
    conf = config.load(config.conf_path(tree or default_tree()))
    removals = plan_gc(inventory.read(), live_vms(live), conf)
    rows = [{"vm": "-" if v is None else v, "nic": "-" if n is None else n, "remove": what,
             "what": thing} for v, n, what, thing in removals]
    emit(rows, [(k, k) for k in ("vm", "nic", "remove", "what")], as_json,
         title=None if as_json else ("removing:" if do_apply else "would remove (dry run; "
                                                                   "--apply removes):"))
    if do_apply and removals:
        apply_gc(removals, conf, Log("gc"))
