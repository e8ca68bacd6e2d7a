"""vnmlib.host.netlink.routing (stdlib rtnetlink writes and reads) against iproute2's view."""

import json
import subprocess

from support.paths import PYTHON, REPO

PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from vnmlib.errors import VnmError
from vnmlib.host.netlink import reader, routing as r
br = reader.link("brr").index
up = reader.link("uplink0").index
r.add_host_route("10.9.0.10", br, "brr")
r.add_proxy("10.9.0.1", br, "brr")
r.add_address("198.51.100.10", 32, up, "uplink0")
seen = {"routes": r.host_routes(), "proxies": sorted(r.proxy_neighbours()),
        "addresses": sorted(a for a in r.addresses() if a[2] == up and ":" not in a[0])}
try:
    r.add_host_route("10.9.0.10", br, "brr")
except VnmError as exc:
    seen["again"] = str(exc)
print(json.dumps(seen), flush=True)
sys.stdin.readline()  # the test reads the kernel here
r.del_host_route("10.9.0.10", br, "brr")
r.del_proxy("10.9.0.1", br, "brr")
r.del_address("198.51.100.10", 32, up, "uplink0")
try:
    r.del_proxy("10.9.0.1", br, "brr")
except VnmError as exc:
    print(exc)
'''


def test_routes_proxies_addresses_agree_with_ip(ns):
    ns.ip("link", "add", "brr", "type", "bridge")
    ns.ip("link", "set", "brr", "up")
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, PYTHON, "-c", PROBE, REPO],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = json.loads(proc.stdout.readline())
    br = json.loads(ns.ip("-j", "link", "show", "brr"))[0]["ifindex"]
    up = json.loads(ns.ip("-j", "link", "show", "uplink0"))[0]["ifindex"]
    routes = [(r["dst"], r["dev"], r["scope"]) for r in json.loads(ns.ip("-j", "route"))]
    assert ("10.9.0.10", "brr", "link") in routes
    assert [(n["dst"], n["dev"]) for n in json.loads(ns.ip("-j", "neigh", "show", "proxy"))] == \
        [("10.9.0.1", "brr")]
    assert "198.51.100.10/32" in ns.ip("addr", "show", "dev", "uplink0")
    assert seen["routes"] == {"10.9.0.10": br}
    assert seen["proxies"] == [["10.9.0.1", br]]
    assert seen["addresses"] == [["198.51.100.10", 32, up]]
    assert seen["again"] == "cannot add route 10.9.0.10/32 dev brr: already exists"

    out, _ = proc.communicate("go\n", timeout=10)
    assert proc.returncode == 0
    assert out.strip() == "cannot delete proxy ARP entry 10.9.0.1 dev brr: not found"
    assert "10.9.0.10" not in ns.ip("route")
    assert ns.ip("neigh", "show", "proxy").strip() == ""
    assert "198.51.100.10" not in ns.ip("addr", "show", "dev", "uplink0")
