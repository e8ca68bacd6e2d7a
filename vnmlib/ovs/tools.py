"""Open vSwitch through its own tools: ovs-vsctl transactions, ovs-ofctl bundles (SPEC §5).

Reads: one select transaction on the database socket gives the bridges, ports,
interfaces and global settings an action plans from (:func:`read_state`,
:mod:`vnmlib.ovs.ovsdb`).
Writes are steps (:mod:`vnmlib.host.steps`): :class:`Transaction` is one ovs-vsctl
run, so everything in it happens in one OVSDB transaction or not at all;
:class:`FlowBundle` replaces a port's flows with one OpenFlow 1.4 bundle, so a
VM is never seen with half of its anti-spoofing flows.

The tools find the daemons as every OVS tool does (``OVS_RUNDIR``, default
``/var/run/openvswitch``), which also lets the tests run a private Open
vSwitch in a namespace.
"""

import re

from vnmlib.host import process
from vnmlib.errors import InputError, OutcomeUnknown, VnmError
from vnmlib.host.steps import Step

# Seconds an OVS tool may wait for the daemons. Without it a stopped
# ovs-vswitchd makes ovs-vsctl wait forever and the action hangs oned's slot;
# libvirt uses 5 s for the same calls, a busy host's reconfiguration can take longer.
TIMEOUT = 10


def _vsctl_argv(commands, wait=True):
    argv = [process.which("ovs-vsctl"), f"--timeout={TIMEOUT}"]
    if not wait:
        argv.append("--no-wait")
    for command in commands:
        argv += ["--", *command]
    return argv


def _ovs_error(result, what):
    line = result.error_line()
    if result.returncode in (142, -14) or "alarm clock" in line.lower():  # --timeout's SIGALRM
        # ovs-vsctl may have committed to the database and timed out waiting for a
        # stalled ovs-vswitchd: the step is undone too (vnmlib.host.steps.apply)
        return OutcomeUnknown(f"{what}: no answer from Open vSwitch within {TIMEOUT} s "
                              "(is ovs-vswitchd running?)")
    elif "database connection failed" in line or "No such file or directory" in line:
        line = f"cannot reach Open vSwitch ({line})"
    return VnmError(f"{what}: {line}")


def vsctl(commands, what, wait=True):
    """Run ``commands`` (argv lists) as one ovs-vsctl transaction; its stdout.

    ``wait=False`` (``--no-wait``): return once the database has committed,
    without waiting for ovs-vswitchd to catch up (an undo after a timeout).
    """
    result = process.run(_vsctl_argv(commands, wait))
    if not result.ok:
        raise _ovs_error(result, what)
    return result.stdout


def ofctl(args, what, stdin_text=None):
    argv = [process.which("ovs-ofctl"), f"--timeout={TIMEOUT}", *args]
    result = process.run(argv, stdin_text)
    if not result.ok:
        raise _ovs_error(result, what)
    return result.stdout


# -- reading --------------------------------------------------------------------

def _optional(value):
    """An optional column is a set of zero or one atom: None or the atom."""
    return (value[0] if value else None) if isinstance(value, list) else value


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _shown(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(_shown, value)) if value else "[]"
    return "(unset)" if value is None else str(value)


class OvsState:
    """Bridges, ports and interfaces as one OVSDB snapshot; read by :func:`read_state`."""

    def __init__(self, bridges, ports, interfaces, other_config, differences):
        self.bridges = bridges          # bridge name -> set of port names
        self.ports = ports              # port name -> {column: value, "bridge": name}
        self.interfaces = interfaces    # interface name -> {column: value}
        self.other_config = other_config  # the Open_vSwitch table's other_config
        self.differences = differences  # (bridge, column) -> current value, see read_state

    def bridge_of(self, port):
        entry = self.ports.get(port)
        return entry["bridge"] if entry else None

    def ofport(self, interface):
        entry = self.interfaces.get(interface)
        return entry["ofport"] if entry else None


def read_state(options=()):
    """One read-only OVSDB transaction (:mod:`vnmlib.ovs.ovsdb`).

    ``options`` = [(bridge, what, column[:key], value)]: bridge columns a
    configuration asks for (``what`` names it in errors). Each is checked
    against the schema, as ovs-vsctl would (``stp_enable`` takes a boolean,
    ``protocols`` a set), before anything changes; for bridges that exist, the
    columns not holding the value end up in ``differences``.
    """
    from vnmlib.ovs import ovsdb

    names = {column.split(":", 1)[0] for _, _, column, _ in options}
    with ovsdb.Connection(TIMEOUT) as db:
        types = db.columns("Bridge") if options else {}
        for _, what, column, _ in options:
            if column.split(":", 1)[0] not in types:
                raise InputError(f"{what}: Open vSwitch bridges have no column {column!r}")
        rows = db.select({
            "Bridge": ["name", "ports"] + sorted(names - {"name", "ports"}),
            "Port": ["_uuid", "name", "tag", "trunks", "vlan_mode", "cvlans", "other_config",
                     "external_ids"],
            # options: a vhost-user port's socket (vnmlib.ovs.vhost_user)
            # ofport_request: the numbers pre reserves (vnmlib.ovs.pre_guard)
            "Interface": ["name", "type", "ofport", "ofport_request", "error", "mtu_request",
                          "external_ids", "options"],
            "Open_vSwitch": ["other_config"],
        })
    existing = {row["name"]: row for row in rows["Bridge"]}
    differences = {}
    for bridge, what, column, value in options:
        name, _, key = column.partition(":")
        current = existing.get(bridge, {}).get(name)
        try:
            same = ovsdb.holds(types[name], current, key or None, value)
        except ValueError as exc:
            raise InputError(f"{what}: {column}={value} is not a value of that column "
                             f"({exc})") from None
        if bridge in existing and not same:
            differences[(bridge, column)] = _shown(current.get(key) if key else current)
    by_uuid = {row["_uuid"]: row for row in rows["Port"]}
    bridges, ports = {}, {}
    for bridge in rows["Bridge"]:
        names = set()
        for uuid in _as_list(bridge["ports"]):
            port = by_uuid.get(uuid)
            if port is None:
                continue
            names.add(port["name"])
            ports[port["name"]] = dict(
                port, bridge=bridge["name"], tag=_optional(port["tag"]),
                vlan_mode=_optional(port["vlan_mode"]), trunks=_as_list(port["trunks"]),
                cvlans=_as_list(port["cvlans"]))
        bridges[bridge["name"]] = names
    interfaces = {row["name"]: dict(row, ofport=_optional(row["ofport"]),
                                    ofport_request=_optional(row["ofport_request"]),
                                    error=_optional(row["error"]),
                                    mtu_request=_optional(row["mtu_request"]))
                  for row in rows["Interface"]}
    other_config = rows["Open_vSwitch"][0]["other_config"] if rows["Open_vSwitch"] else {}
    return OvsState(bridges, ports, interfaces, other_config, differences)


FLOW_FIELDS = r"cookie=(0x[0-9a-f]+).*?\bin_port=([0-9]+).*?actions=note:([0-9a-f.]+)"


def noted_ports(bridge):
    """[(cookie, in_port, note)] of the table-0 flows without a cookie that carry a note.

    Flows the reference drivers made (no cookie) are found by their note only.
    Only those are asked for (``cookie=0/-1``, which OVS answers from its cookie
    index): vnm's own flows, a few per protected NIC in table 0, are found by
    their cookie, and reading them all made ``clean`` grow with the bridge.
    """
    out = ofctl(["--no-names", "dump-flows", bridge, "table=0,cookie=0/-1"],
                f"reading flows of {bridge}")
    found = []
    for line in out.splitlines():
        match = re.search(FLOW_FIELDS, line)
        if match:
            found.append((int(match.group(1), 16), int(match.group(2)), match.group(3)))
    return found


# -- writing (steps) ---------------------------------------------------------------

class Transaction(Step):
    """ovs-vsctl commands applied as one OVSDB transaction.

    ``shown`` says what it does (log lines, ``vnm plan``); ``undo_commands``
    reverse it (for instance ``del-br`` of a bridge it creates).
    """

    def __init__(self, commands, shown, undo_commands=(), origin="", wait=True):
        self.commands = [list(c) for c in commands]
        self.shown = shown
        self.undo_commands = [list(c) for c in undo_commands]
        self.origin = origin
        self.wait = wait

    def describe(self):
        return f"ovs: {self.shown}"

    def apply(self, nl):
        vsctl(self.commands, "ovs-vsctl", self.wait)

    def undo(self):
        if not self.undo_commands:
            return None
        # the database is the truth: an undo must not wait for a stalled ovs-vswitchd
        return Transaction(self.undo_commands, f"undo ({self.shown})", wait=False)


class FlowBundle(Step):
    """``ovs-ofctl --bundle add-flows``: deletions and additions, all or nothing."""

    def __init__(self, bridge, lines, shown, origin=""):
        self.bridge = bridge
        self.lines = list(lines)
        self.shown = shown
        self.origin = origin

    def describe(self):
        return f"ovs: {self.shown}"

    def apply(self, nl):
        ofctl(["--bundle", "add-flows", self.bridge, "-"], f"flows of {self.bridge}",
              "".join(line + "\n" for line in self.lines))


class PurgeDatapathFlows(Step):
    """``ovs-appctl revalidator/purge``: drop cached datapath flows after a global change."""

    def describe(self):
        return "ovs: purge cached datapath flows (vlan-limit changed)"

    def apply(self, nl):
        result = process.run([process.which("ovs-appctl"), f"--timeout={TIMEOUT}",
                              "revalidator/purge"])
        if not result.ok:
            raise _ovs_error(result, "ovs-appctl revalidator/purge")
