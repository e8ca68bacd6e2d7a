"""What golden trace C (ovswitch, ovswitch_vxlan against an OVS stand-in) asks of Open vSwitch.

The trace is a list of commands, not a state; these helpers turn it into the
state it describes: the columns each ``ovs-vsctl set`` gives a port, and the
flows of each ``ovs-ofctl add-flow`` with the port numbers the trace used.
"""

import os
import re
import shlex

from helpers import GOLDEN

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
