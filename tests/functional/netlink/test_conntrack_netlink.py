"""vnmlib/host/netlink/conntrack.py against the ``conntrack`` tool, in a throwaway namespace.

Entries made with ``conntrack -I`` are what the client dumps; entries the
client makes and deletes are what ``conntrack -L`` then lists. The client runs
inside the namespace with the interpreter the actions use (VNM_TEST_PYTHON).
"""

import json
import re
import subprocess

from support.paths import PYTHON, REPO

# (conntrack -I arguments, the entry's key as Entry.key() gives it)
MADE_BY_TOOL = [
    (["-s", "10.80.0.1", "-d", "10.80.0.2", "-p", "tcp", "--sport", "40000", "--dport", "22",
      "--state", "ESTABLISHED"],
     [4, 6, "10.80.0.1", "10.80.0.2", 40000, 22, None, None, None, 0]),
    (["-s", "10.80.0.3", "-d", "10.80.0.1", "-p", "udp", "--sport", "5353", "--dport", "53",
      "-w", "7"],
     [4, 17, "10.80.0.3", "10.80.0.1", 5353, 53, None, None, None, 7]),
    (["-s", "10.80.0.1", "-d", "10.80.0.4", "-p", "icmp", "--icmp-type", "8", "--icmp-code", "0",
      "--icmp-id", "77"],
     [4, 1, "10.80.0.1", "10.80.0.4", None, None, 8, 0, 77, 0]),
    (["-s", "fd80::1", "-d", "fd80::2", "-p", "tcp", "--sport", "40001", "--dport", "443",
      "--state", "ESTABLISHED", "-w", "3"],
     [6, 6, "fd80::1", "fd80::2", 40001, 443, None, None, None, 3]),
    (["-s", "fd80::3", "-d", "fd80::1", "-p", "icmpv6", "--icmpv6-type", "128",
      "--icmpv6-code", "0", "--icmpv6-id", "9"],
     [6, 58, "fd80::3", "fd80::1", None, None, 128, 0, 9, 0]),
]

CLIENT = """
import ipaddress, json, sys
sys.path.insert(0, {repo!r})
from vnmlib.errors import VnmError
from vnmlib.host.netlink import conntrack

def entry(key):
    family, protocol, src, dst, sport, dport, icmp_type, icmp_code, icmp_id, zone = key
    return conntrack.Entry(family, protocol, ipaddress.ip_address(src).packed,
                           ipaddress.ip_address(dst).packed, sport, dport, icmp_type,
                           icmp_code, icmp_id, zone)

command, arg = sys.argv[1], json.loads(sys.argv[2])
try:
    if command == "dump":
        wanted = None if arg is None else [ipaddress.ip_address(a).packed for a in arg]
        result = [e.key() for e in conntrack.dump(wanted)]
    elif command == "delete":
        result = conntrack.delete([entry(k) for k in arg])
    elif command == "delete-dumped":
        wanted = [ipaddress.ip_address(a).packed for a in arg]
        result = conntrack.delete(conntrack.dump(wanted))
    elif command == "create":
        result = conntrack.create([entry(k) for k in arg])
    else:
        result = conntrack.count()
except VnmError as exc:
    result = "error: " + str(exc)
print(json.dumps(result))
"""


def client(ns, command, arg=None):
    done = subprocess.run(["ip", "netns", "exec", ns.name, PYTHON, "-c",
                           CLIENT.format(repo=REPO), command, json.dumps(arg)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def tool_entries(ns):
    """Entry keys of ``conntrack -L`` (IPv4 and IPv6), from its extended output."""
    keys = set()
    for family in ("ipv4", "ipv6"):
        for line in ns.exec("conntrack", "-L", "-f", family, "-o", "extended").splitlines():
            words = line.split()
            fields = {}
            for word in words[5:]:
                name, _, value = word.partition("=")
                fields.setdefault(name, value)  # the first of each: the original tuple
            number = lambda name: int(fields[name]) if name in fields else None  # noqa: E731
            keys.add((4 if words[0] == "ipv4" else 6, int(words[3]), fields["src"],
                      fields["dst"], number("sport"), number("dport"), number("type"),
                      number("code"), number("id"), number("zone") or 0))
    return keys


def tool_insert(ns, args):
    ns.exec("conntrack", "-I", *args, "-t", "120")


def test_a_fresh_namespace_has_nothing_to_dump(ns):
    assert client(ns, "dump") == []


def test_dump_reads_what_the_tool_made(ns):
    for args, _key in MADE_BY_TOOL:
        tool_insert(ns, args)
    keys = {tuple(k) for k in client(ns, "dump")}
    assert keys == {tuple(key) for _args, key in MADE_BY_TOOL} == tool_entries(ns)
    assert client(ns, "count") == len(MADE_BY_TOOL)


def test_dump_keeps_the_entries_of_the_addresses_asked_for(ns):
    for args, _key in MADE_BY_TOOL:
        tool_insert(ns, args)
    # 10.80.0.1 is the source of two entries and the destination of one; fd80::1 likewise
    got = {tuple(k) for k in client(ns, "dump", ["10.80.0.1", "fd80::1"])}
    assert got == {tuple(key) for _args, key in MADE_BY_TOOL if "10.80.0.1" in key[2:4]
                   or "fd80::1" in key[2:4]}
    assert client(ns, "dump", ["10.80.9.9"]) == []


def test_delete_removes_exactly_the_entries_given(ns):
    for args, _key in MADE_BY_TOOL:
        tool_insert(ns, args)
    doomed = [MADE_BY_TOOL[1][1], MADE_BY_TOOL[4][1]]  # one with a zone, one ICMPv6
    assert client(ns, "delete", doomed) == 2
    assert tool_entries(ns) == {tuple(key) for _args, key in MADE_BY_TOOL} - \
        {tuple(k) for k in doomed}
    # gone already: not an error, none deleted
    assert client(ns, "delete", doomed) == 0


def test_dumped_entries_are_deleted_by_their_own_tuple(ns):
    for args, _key in MADE_BY_TOOL:
        tool_insert(ns, args)
    assert client(ns, "delete-dumped", ["10.80.0.2", "fd80::2"]) == 2
    assert tool_entries(ns) == {tuple(key) for _args, key in MADE_BY_TOOL} - \
        {tuple(MADE_BY_TOOL[0][1]), tuple(MADE_BY_TOOL[3][1])}


def test_create_makes_what_the_tool_lists(ns):
    keys = [key for _args, key in MADE_BY_TOOL]
    assert client(ns, "create", keys) is None
    assert tool_entries(ns) == {tuple(k) for k in keys}
    tcp = ns.exec("conntrack", "-L", "-p", "tcp", "--dport", "22")
    assert re.search(r"\bESTABLISHED\b", tcp)


def test_many_entries_go_in_batches(ns):
    keys = [[4, 17, "10.81.%d.%d" % (i // 250, i % 250 + 1), "10.82.0.1", 1024 + i, 53,
             None, None, None, 0] for i in range(1000)]
    assert client(ns, "create", keys) is None
    assert client(ns, "count") == 1000
    assert len(client(ns, "dump", ["10.82.0.1"])) == 1000
    assert client(ns, "delete", keys[:600]) == 600
    assert len(tool_entries(ns)) == 400


def test_kernel_refusals_are_one_line(ns):
    key = MADE_BY_TOOL[0][1]
    client(ns, "create", [key])
    message = client(ns, "create", [key])
    assert message == ("error: cannot create conntrack entry proto 6 10.80.0.1 port 40000 -> "
                       "10.80.0.2 port 22: entry already exists (1 of 1 refused)")


def test_count_is_zero_without_conntrack(monkeypatch, tmp_path):
    from vnmlib.host.netlink import conntrack

    # no nf_conntrack module: no /proc file at all
    monkeypatch.setattr(conntrack, "COUNT_PATH", str(tmp_path / "missing"))
    assert conntrack.count() == 0
