"""vnm gc: what VMs that no longer run here left behind; removed with --apply.

A VM is alive when the hypervisor lists it (``virsh list``: domains
``one-<id>``), when ``--live`` names it, or when its ``pre`` wrote a
bridge-user record less than ``gc_record_grace`` seconds ago (it is being
deployed: no tap yet, not listed yet). For every NIC of any other VM:
its security-group chains, jumps and ipsets (through the firewall engine,
one transaction), its nat chains and their jumps (nodeport's and elastic's
``one-<vm>-<nic>-dnat``/``-snat``: left, they keep forwarding the VM's host
ports and nodeport refuses those ports to new VMs), its Open vSwitch flows
(by cookie) and port when the tap is gone, its bridge-user records; then the
bridges vnm recorded that are left with no guest port and no record (unless
``keep_empty_bridge``) — the TProxy's veth ``<BR>b``, proven by
:mod:`vnmlib.linux.tproxy`, is no guest, and the bridge's TProxy is released
with it — and the bridges named as oned names them that no record names
(listed; removed with ``--unrecorded-bridges``). Dry run by default; with
``--apply`` each removal is re-checked under the lock the actions take for it
(see "applying" below).
"""

import os
import re
import shutil

import click

from vnmlib.cli.output import emit


GUEST_KINDS = ("tun", "veth")


def live_vms(live):
    if live is not None:
        try:
            return {int(v) for v in live.split(",") if v.strip()}
        except ValueError:
            raise click.BadParameter(f"{live!r} is not a list of VM IDs", param_hint="--live")
    from vnmlib.host import process

    virsh = shutil.which("virsh")
    if virsh is None:
        raise click.ClickException("cannot tell which VMs run here: no virsh; pass --live ID,…")
    done = process.run([virsh, "-c", "qemu:///system", "list", "--name"])  # bounded
    if not done.ok:
        raise click.ClickException(f"virsh list failed: {done.error_line()}; pass --live ID,…")
    return {int(m.group(1)) for m in re.finditer(r"^one-([0-9]+)$", done.stdout, re.M)}


def plan_gc(inv, live, conf):
    """[(vm, nic or None, what, thing)]: what gc removes, in order."""
    removals = []
    dead = [n for key, n in sorted(inv.nics.items()) if key[0] not in live]
    recorded = {b for n in inv.nics.values() for b in n.records}
    for nic in dead:
        if nic.rules or nic.ipsets:
            removals.append((nic.vm_id, nic.nic_id, "firewall", nic.base))
        if nic.nat:
            removals.append((nic.vm_id, nic.nic_id, "nat", nic.base))
        if nic.ovs_flows:
            removals.append((nic.vm_id, nic.nic_id, "ovs flows", nic.base))
        # the NIC's port (by vnm's mark, whatever its name) once its device is gone
        if nic.ovs_port and nic.ovs_port_name not in inv.links:
            removals.append((nic.vm_id, nic.nic_id, "ovs port",
                             f"{nic.ovs_port}:{nic.ovs_port_name}"))
        for bridge in nic.records:
            removals.append((nic.vm_id, nic.nic_id, "record", f"{bridge}:{nic.vm_id}-{nic.nic_id}"))
    if not conf.get("keep_empty_bridge"):
        left = {b for n in inv.nics.values() if n.vm_id in live for b in n.records}
        for bridge in sorted(recorded - left):
            # any port that may be a guest keeps the bridge: taps (tun), LXC and
            # test veths, and anything named like a tap; not the TProxy's proven veth
            if bridge in inv.ovs_bridges:
                ports = inv.ovs_bridges[bridge]
                kind = "ovs bridge"
            else:
                ports = [name for name, link in inv.links.items() if link["master"] == bridge]
                kind = "bridge"
            guests = [name for name in ports if name not in inv.tproxy_veths
                      and (name.startswith("one-")
                           or inv.links.get(name, {}).get("kind") in GUEST_KINDS)]
            if (bridge in inv.links or bridge in inv.ovs_bridges) and not guests:
                removals.append((None, None, kind, bridge))
                if bridge in inv.tproxy_bridges or f"{bridge}b" in inv.tproxy_veths:
                    removals.append((None, None, "tproxy", bridge))
    return removals


# oned's default bridge names: onebr<VNET_ID>, onebr.<VLAN_ID> (reference, "Bridge")
DEFAULT_BRIDGE_NAME = re.compile(r"^onebr\.?[0-9]+$")


def plan_unrecorded(inv):
    """[(None, None, what, bridge)]: bridges named as oned names them that no record names.

    pre records every bridge it uses, so such a bridge was left by a VM that
    never got its clean from a vnm before the records (or from the reference),
    or was made by hand; gc lists it and removes it only when asked to
    (``--unrecorded-bridges``), and only without guest ports.
    """
    recorded = {b for n in inv.nics.values() for b in n.records}
    linux = {name for name, link in inv.links.items() if link["kind"] == "bridge"}
    found = []
    for bridge in sorted((linux | set(inv.ovs_bridges)) - recorded):
        if DEFAULT_BRIDGE_NAME.match(bridge):
            kind = "unrecorded ovs bridge" if bridge in inv.ovs_bridges else "unrecorded bridge"
            found.append((None, None, kind, bridge))
    return found


class _Ctx:
    """What the firewall engine and the TProxy's release need of an action's context."""

    def __init__(self, conf, log):
        self.conf, self.log = conf, log


# -- applying: each removal under the lock an action would hold, re-checked there ------------
#
# The plan above is a snapshot; by the time gc acts, a VM may have run its
# pre (a new record: the bridge is in use before any tap exists), plugged a
# tap, or come back. So each removal takes the lock the actions take for that
# object (the firewall lock; the bridge's link lock, with its uplinks for a
# bridge) and asks again, under it, whether the object is still unused. An
# action writes its records and builds under the same locks, so what gc sees
# there stays true until it has deleted.

def deploying_vms(grace):
    """VMs whose pre wrote or refreshed a bridge-user record less than ``grace`` s ago.

    Between ``pre`` and its domain's start a VM has no tap and virsh does not
    list it, but it is alive: its record says so.
    """
    from vnmlib.host.locks import BridgeUsers

    users = BridgeUsers()
    found = set()
    for bridge in users.keys():
        for user in users.users(bridge):
            age = users.age(bridge, user)
            if age is not None and age < grace:
                found.add(int(user.partition("-")[0]))
    return found


def _links_now():
    """{name: (kind, master)} of every link, read now (``ip -d -j link show``)."""
    import json

    from vnmlib.host import process

    out = process.run([process.which("ip"), "-d", "-j", "link", "show"]).check(
        "reading links").stdout
    return {link["ifname"]: (link.get("linkinfo", {}).get("info_kind", ""), link.get("master"))
            for link in json.loads(out or "[]")}


def _guests(ports, bridge=None):
    """Ports that may be a guest's: taps (tun), LXC and test veths, anything named like a
    tap; not ``<BR>b`` of Linux bridge ``bridge`` when TProxy's proof says it is its veth."""
    from vnmlib.host.view import LinkView
    from vnmlib.linux import tproxy

    found = sorted(name for name, kind in ports.items()
                   if name.startswith("one-") or kind in GUEST_KINDS)
    if bridge is not None and f"{bridge}b" in found and tproxy.proven_ours(LinkView(), bridge):
        found.remove(f"{bridge}b")
    return found


class _TproxyUser:
    """A dead VM's bridge, as :func:`vnmlib.linux.tproxy.release` reads a NIC and its need:
    its bridge, and the ports that are no guests (the TProxy veth)."""

    def __init__(self, bridge):
        self.bridge = bridge

    def non_guests(self):
        return {f"{self.bridge}b"}


class _Applier:
    """The removals of one gc run, each re-checked under its lock."""

    def __init__(self, conf, log):
        from vnmlib.model import waits

        self.conf, self.log = conf, log
        self.grace = waits.seconds("gc_record_grace")
        self.bridges_gone = set()  # deleted here, or gone already: their TProxy may go

    def kept(self, what, thing, why):
        self.log.info(f"kept {what} {thing}: {why}")

    def deploying(self, vm_id):
        return vm_id in deploying_vms(self.grace)

    def unused(self, what, base):
        """Asked under the firewall lock: the NIC's tap is still gone, its VM not deploying."""
        from vnmlib.host import sysfs

        vm_id = int(base.split("-")[1])
        if sysfs.exists(base):
            self.kept(what, base, f"tap {base} exists again")
        elif self.deploying(vm_id):
            self.kept(what, base, f"VM {vm_id} is being deployed (recent record)")
        else:
            return True
        return False

    def firewall(self, bases):
        from vnmlib import firewall

        firewall.apply(_Ctx(self.conf, self.log), remove=bases,
                       still_unused=lambda base: self.unused("firewall", base))

    def nat(self, bases):
        """The NICs' nat chains and jumps, one transaction of the configured backend, as
        nodeport's and elastic's clean write it (:func:`vnmlib.elastic.nat.remove`)."""
        from vnmlib import firewall
        from vnmlib.elastic import nat

        nat.remove(bases, firewall.backend_of(self.conf), lambda base: self.unused("nat", base))

    def ovs_flows(self, vm_id, nic_id, thing):
        from vnmlib.ovs import tools as ovs, flows as ovs_flows
        from vnmlib.host.locks import LinkLocks

        cookie = ovs_flows.cookie_of(vm_id, nic_id)
        for bridge in sorted(ovs.read_state().bridges):
            with LinkLocks([bridge]):
                if self.deploying(vm_id):
                    self.kept("ovs flows", thing, f"VM {vm_id} is being deployed (recent record)")
                    return
                if bridge in ovs.read_state().bridges:
                    ovs.ofctl(["del-flows", bridge, f"cookie={cookie:#x}/-1"],
                              f"flows of {thing}")

    def ovs_port(self, vm_id, nic_id, thing):
        from vnmlib.ovs import tools as ovs
        from vnmlib.host import sysfs
        from vnmlib.ops.inventory import ovs_port_owner
        from vnmlib.host.locks import LinkLocks

        bridge, port = thing.split(":")[:2]
        with LinkLocks([bridge]):
            if sysfs.exists(port):
                self.kept("ovs port", thing, f"tap {port} exists again")
            elif self.deploying(vm_id):
                self.kept("ovs port", thing, f"VM {vm_id} is being deployed (recent record)")
            else:
                state = ovs.read_state()
                if state.bridge_of(port) != bridge:
                    return
                if ovs_port_owner(state, port) != (vm_id, nic_id):  # re-added, marked anew
                    self.kept("ovs port", thing, "it is not this NIC's port any more")
                    return
                ovs.vsctl([["--if-exists", "del-port", bridge, port]], f"port {port}")

    def record(self, thing):
        from vnmlib.host.locks import BridgeUsers, LinkLocks

        bridge, user = thing.split(":")
        with LinkLocks([bridge]):
            users = BridgeUsers()
            age = users.age(bridge, user)
            if age is not None and age < self.grace:
                self.kept("record", thing, f"its pre ran again {age:.0f} s ago")
            else:
                users.remove(bridge, user)

    def bridge(self, bridge, is_ovs):
        """Delete a bridge if, under its lock and its ports' locks, nothing uses it."""
        from vnmlib.ovs import tools as ovs
        from vnmlib.host import steps
        from vnmlib.host.change import change_links
        from vnmlib.host.locks import BridgeUsers

        def ports_now():
            """{port: kind} of the bridge now; None when it is gone."""
            links = _links_now()
            if is_ovs:
                state = ovs.read_state()
                if bridge not in state.bridges:
                    return None
                names = state.bridges[bridge] - {bridge}  # its own internal port aside
            elif links.get(bridge, ("", None))[0] != "bridge":
                return None
            else:
                names = {name for name, (_, master) in links.items() if master == bridge}
            return {name: links.get(name, ("", None))[0] for name in names}

        def plan(ports):
            """Asked again under the locks: the deletion, or [] when the bridge is in use."""
            users = BridgeUsers().users(bridge)
            if ports is None:
                self.bridges_gone.add(bridge)
                return []
            guests = _guests(ports, None if is_ovs else bridge)
            if users:
                self.kept("bridge", bridge, f"in use by {', '.join(sorted(users))} (records)")
            elif set(ports) - set(seen):
                added = ", ".join(sorted(set(ports) - set(seen)))
                self.kept("bridge", bridge, f"new ports {added}")
            elif guests:
                self.kept("bridge", bridge, f"guest ports {', '.join(guests)}")
            elif is_ovs:
                return [ovs.Transaction([["--if-exists", "del-br", bridge]],
                                        f"delete bridge {bridge}", origin=f"bridge {bridge}")]
            else:
                return [steps.DeleteLink(bridge)]
            return []

        seen = ports_now()
        # the uplinks too: deleting the bridge releases them, as clean does
        if seen is None or change_links(self.log, [bridge, *seen], plan, read=ports_now):
            self.bridges_gone.add(bridge)

    def tproxy(self, bridge):
        """The TProxy of a bridge gc deleted, released as ``clean`` releases it: under its
        locks, only when no guest and no record is left (else its pre ran again)."""
        from vnmlib.linux import tproxy

        if bridge not in self.bridges_gone:
            self.kept("tproxy", bridge, f"bridge {bridge} is kept")
            return
        tproxy.release(_Ctx(self.conf, self.log), [_TproxyUser(bridge)],
                       need_type=lambda user, conf: user)


def apply_gc(removals, conf, log, unrecorded=False):
    applier = _Applier(conf, log)
    bases = [thing for _, _, what, thing in removals if what == "firewall"]
    if bases:
        applier.firewall(bases)
    bases = [thing for _, _, what, thing in removals if what == "nat"]
    if bases:
        applier.nat(bases)
    for vm_id, nic_id, what, thing in removals:
        if what == "ovs flows":
            applier.ovs_flows(vm_id, nic_id, thing)
        elif what == "ovs port":
            applier.ovs_port(vm_id, nic_id, thing)
        elif what == "record":
            applier.record(thing)
        elif what in ("bridge", "ovs bridge") or (unrecorded and what.startswith("unrecorded")):
            applier.bridge(thing, what.endswith("ovs bridge"))
        elif what == "tproxy":
            applier.tproxy(thing)


@click.command(name="gc")
@click.option("--apply", "do_apply", is_flag=True, help="remove what is found (default: list it)")
@click.option("--live", help="the VM IDs running here, comma-separated (default: virsh list)")
@click.option("--tree", type=click.Path(exists=True, file_okay=False),
              help="the vnm/ tree whose configuration applies")
@click.option("--unrecorded-bridges", "unrecorded", is_flag=True,
              help="with --apply, also remove bridges named as oned names them (onebrN, "
                   "onebr.N) that no record names and no guest uses (default: list them)")
@click.option("--json", "as_json", is_flag=True, help="the findings as JSON")
def command(do_apply, live, tree, as_json, unrecorded):
    """Find chains (security groups; nodeport's and elastic's nat), ipsets, OVS
    flows and ports, records and empty vnm-made bridges (a TProxy veth is no
    guest: the bridge's TProxy goes with it) left by VMs that no longer run
    here; remove them with --apply. Bridges named as oned names them that no
    record names are listed too."""
    from vnmlib import firewall
    from vnmlib.model import config, waits
    from vnmlib.ops import inventory
    from vnmlib.host.locks import identify
    from vnmlib.log import Log
    from vnmlib.cli.run import default_tree

    if os.geteuid() != 0:
        raise click.ClickException("gc reads and changes the host's firewall and links: run it "
                                   "as root")
    identify("gc")
    conf = config.load(config.conf_path(tree or default_tree()))
    waits.configure(conf)
    alive = live_vms(live) | deploying_vms(waits.seconds("gc_record_grace"))
    inv = inventory.read(firewall.backend_of(conf))  # the tables gc's removals go to
    removals = plan_gc(inv, alive, conf) + plan_unrecorded(inv)
    rows = [{"vm": "-" if v is None else v, "nic": "-" if n is None else n,
             "remove": what if unrecorded or not what.startswith("unrecorded") else
             f"{what} (listed only: --unrecorded-bridges removes)",
             "what": thing} for v, n, what, thing in removals]
    emit(rows, [(k, k) for k in ("vm", "nic", "remove", "what")], as_json,
         title=None if as_json else ("removing:" if do_apply else "would remove (dry run; "
                                                                   "--apply removes):"))
    if do_apply and removals:
        apply_gc(removals, conf, Log("gc"), unrecorded)
