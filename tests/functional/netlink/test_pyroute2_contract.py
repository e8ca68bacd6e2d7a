"""The pyroute2 calls and error codes vnmlib relies on (Debian's 0.7 and PyPI's 0.9).

Runs in-process inside the test namespace via `ip netns exec`, with the
interpreter the actions use (VNM_TEST_PYTHON), so both versions are pinned.
"""

import json

from support.commands import sh
from support.paths import PYTHON

PROBE = r'''
import errno, json
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
ipr = IPRoute()
out = {}
ipr.link("add", ifname="brc", kind="bridge", br_stp_state=1, br_hello_time=300)
idx = ipr.link_lookup(ifname="brc")[0]
ipr.link("set", index=idx, state="up")
up = ipr.link_lookup(ifname="uplink0")[0]
ipr.link("set", index=up, master=idx)
out["master"] = open("/sys/class/net/uplink0/master/ifindex").read().strip() == str(idx)
ipr.link("set", index=up, master=0)
out["released"] = ipr.link_lookup(ifname="nosuch") == []
def code(f):
    try:
        f()
    except NetlinkError as exc:
        return exc.code
out["eexist"] = code(lambda: ipr.link("add", ifname="brc", kind="bridge")) == errno.EEXIST
out["erange"] = code(lambda: ipr.link("add", ifname="brd", kind="bridge", br_hello_time=6)) in (errno.ERANGE, errno.EINVAL)
out["enodev"] = code(lambda: ipr.link("del", index=99999)) == errno.ENODEV
out["hello"] = open("/sys/class/net/brc/bridge/hello_time").read().strip() == "300"
ipr.link("del", index=idx)
out["deleted"] = ipr.link_lookup(ifname="brc") == []
ipr.close()
print(json.dumps(out))
'''


def test_pyroute2_contract(ns):
    result = json.loads(ns.exec(PYTHON, "-c", PROBE))
    assert result == {k: True for k in result} and len(result) == 7, result
    assert sh("ip", "-n", ns.name, "-br", "link", "show", "brd", check=False) == ""
