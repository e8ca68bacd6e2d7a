"""What golden trace C (ovswitch, ovswitch_vxlan against an OVS stand-in) asks of Open vSwitch.

The trace is a list of commands, not a state; these helpers turn it into the
state it describes: the columns each ``ovs-vsctl set`` gives a port, and the
flows of each ``ovs-ofctl add-flow`` with the port numbers the trace used.
"""

import os
import re
import shlex

from support.paths import GOLDEN

C = os.path.join(GOLDEN, "C")


def commands(step):
    with open(os.path.join(C, f"{step}.cmds"), encoding="utf-8") as handle:
        return [shlex.split(line) for line in handle if line.strip()]


def exit_code(step):
    with open(os.path.join(C, f"{step}.rc"), encoding="utf-8") as handle:
        return int(handle.read().strip())


def port_columns(step):
    """{port: {column: value}} of every ``ovs-vsctl set Port|int`` in the step."""
    columns = {}
    for argv in commands(step):
        if argv[:2] == ["ovs-vsctl", "set"] and argv[2].lower() in ("port", "int", "interface"):
            for pair in argv[4:]:
                key, _, value = pair.partition("=")
                columns.setdefault(argv[3], {})[key] = value
    return columns


def ports_by_number(step):
    """{(bridge, number): tap} from ``dump-ports <br> <tap>`` followed by ``del-flows in_port=N``."""
    found, last = {}, None
    for argv in commands(step):
        if argv[:2] == ["ovs-ofctl", "dump-ports"] and len(argv) == 4:
            last = argv[3]
        elif argv[:2] == ["ovs-ofctl", "del-flows"] and last:
            number = int(argv[3].split("=")[1])
            found[(argv[2], number)] = last
            last = None
    return found


def flows(step, bridge, numbers):
    """The ``add-flow`` lines for ``bridge`` with in_port renumbered (``numbers``: golden -> ours)."""
    out = []
    for argv in commands(step):
        if argv[:3] == ["ovs-ofctl", "add-flow", bridge]:
            out.append(re.sub(r"in_port=(\d+)", lambda m: f"in_port={numbers[int(m.group(1))]}",
                              argv[3]))
    return out


# vnm's deliberate additions to the reference's flows (README, "Isolation at the
# wire"; vnmlib/ovs/flows.py): on a filtered port, the tag drops of table 0 and the
# ARP/ND link-layer and NA-target flows of tables 10 and 20, at priorities the
# reference never uses. The replay comparison leaves them out (and checks that a
# filtered port has them); the traffic tests check what they do.
VNM_GUARD_PRIORITIES = {"0": {"110"}, "10": {"50001", "50002"}, "20": {"46000", "46001"}}


def _table_priority(flow):
    fields = dict(f.split("=", 1) for f in flow.split(",") if "=" in f and " " not in f)
    return fields.get("table", "0"), fields.get("priority")


def without_vnm_guards(flows):
    """``dump-flows`` lines (tests/support/ovs.py) minus vnm's guard flows, which must be there."""
    guards = [f for f in flows
              if _table_priority(f)[1] in VNM_GUARD_PRIORITIES.get(_table_priority(f)[0], ())]
    filtered_ports = {re.search(r"in_port=(\d+)", f).group(1) for f in flows
                      if "priority=40000" in f}
    guarded_ports = {re.search(r"in_port=(\d+)", f).group(1) for f in guards
                     if "dl_type=0x8100" in f}
    assert guarded_ports == filtered_ports, (guarded_ports, filtered_ports)
    return [f for f in flows if f not in guards]
