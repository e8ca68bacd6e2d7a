"""vnm status: the VM NICs vnm serves on this host, and what looks wrong."""

import click

from vnmlib.cli.output import emit


@click.command(name="status")
@click.option("--vm", "vm_id", type=int, help="only this VM's NICs")
@click.option("--json", "as_json", is_flag=True, help="everything found, as JSON")
def command(vm_id, as_json):
    """Per VM NIC: tap and its bridge, security-group chains with their rule
    counts, ipsets, Open vSwitch port and flows, bridge-user records; anything
    inconsistent (chains without tap, records keeping a bridge, flows without
    port…) is flagged, and so is a protected NIC whose traffic may not reach
    its chains (another rule accepting it before vnm's jump, a missing jump,
    chain, family or ipset); the exit code is 1 then. Locks held now are listed
    with their holders."""
    from vnmlib.ops import inventory
    from vnmlib.host.locks import identify
    from vnmlib.cli.status_protection import nic_problems

    identify("status")  # names it in the WARN lines of a damaged run directory
    inv = inventory.read()
    nics = [n for key, n in sorted(inv.nics.items()) if vm_id is None or key[0] == vm_id]
    for nic in nics:
        if nic.tap is not None:  # chains without a tap are flagged as such already
            nic.unprotected = nic_problems(inv.tables, nic.base, nic.master, inv.ipset_names)
    if as_json:
        emit([n.as_dict() for n in nics], (), True)
    else:
        rows = [{"nic": f"{n.vm_id}/{n.nic_id}", "tap": n.tap or "-",
                 "bridge": n.ovs_port or n.master or ",".join(n.records) or "-",
                 "rules": " ".join(f"{c[len(n.base) + 1:]}:{k}" for c, k in sorted(n.rules.items()))
                 or "-",
                 "ipsets": len(n.ipsets), "ovs flows": n.ovs_flows or "-",
                 "problems": "; ".join(n.problems()) or "ok"} for n in nics]
        emit(rows, [(k, k) for k in ("nic", "tap", "bridge", "rules", "ipsets", "ovs flows",
                                     "problems")], False)
        _held_locks()
    if any(n.problems() for n in nics):
        raise SystemExit(1)


def _held_locks():
    """The locks actions hold right now: who (pid, action, VM) and for how long."""
    from vnmlib.host.locks import held_locks

    held = held_locks()
    if held:
        emit([{"lock": h["lock"], "pid": h["pid"], "action": h["action"] or "?",
               "vm": "-" if h["vm"] is None else h["vm"],
               "age": "?" if h["age"] is None else f"{h['age']:.1f} s"} for h in held],
             [(k, k) for k in ("lock", "pid", "action", "vm", "age")], False,
             title="held locks:")
