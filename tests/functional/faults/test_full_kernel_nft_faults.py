"""The reliability and fault tests that exercise the firewall backend, against
``:firewall_backend: nft``, in Debian's kernel (``ct state`` in the bridge family;
tools/qemu/run.sh).

- A ``pre`` whose nft transaction the kernel refuses leaves nothing: no bridge, no
  wire guard, nothing of the NIC in ``table bridge vnm``, no record.
- test_reliability's torture (VMs living their lifecycles at once over shared
  bridges, ``update_sg`` storms included): no action fails, and the table holds
  exactly the surviving VMs' chains (their anti-spoofing addresses), dispatch and guards.
- test_reliability's crash consistency: an action killed with SIGKILL at a random
  instant, run again, gives the undisturbed state; clean then leaves the table as
  it was.

The scenarios, VMs and helpers are test_reliability's; only the state read here is
nft's. Fewer VMs and trials than there: every action runs under TCG.
"""

import concurrent.futures
import json
import os
import random
import re

import pytest

from support.assertions import assert_one_error
from support.namespaces import Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import REPO
from support.remotes import copy_tree

import test_reliability as reliability
from test_reliability import BRIDGES, run_script, script, vm

pytestmark = pytest.mark.full_kernel


class NftNamespace(Namespace):
    """A test namespace whose actions run a tree configured with the nft backend."""

    def __init__(self, run_dir, tree):
        super().__init__(run_dir)
        self.tree = tree

    def run(self, driver, action, *args, tree=None, **kwargs):
        return super().run(driver, action, *args, tree=tree or self.tree, **kwargs)


@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nft-faults")
    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), encoding="utf-8") as f:
        conf = f.read().replace(":firewall_backend: restore", ":firewall_backend: nft")
    assert ":firewall_backend: nft" in conf
    (tmp / "run").mkdir()
    namespace = NftNamespace(str(tmp / "run"), copy_tree(str(tmp / "remotes"), conf))
    yield namespace
    namespace.delete()


def vnm_table(ns):
    """``table bridge vnm`` without counters or handles ('' when there is none)."""
    return ns.exec("nft", "-s", "list", "table", "bridge", "vnm", check=False)


def dispatch(ns, map_name):
    out = json.loads(ns.exec("nft", "-j", "list", "map", "bridge", "vnm", map_name))
    return {key: verdict["jump"]["target"] for item in out["nftables"] if "map" in item
            for key, verdict in item["map"].get("elem", [])}


def spoofing_addresses(ns, base):
    """The addresses of NIC ``base``'s IPv4 anti-spoofing rule (the one its comment names
    ``<base>-ip-spoofing``, its set in it: one address, nft lists a value)."""
    out = json.loads(ns.exec("nft", "-j", "list", "chain", "bridge", "vnm", f"{base}-o"))
    for item in out["nftables"]:
        rule = item.get("rule") or {}
        if rule.get("comment") == f"{base}-ip-spoofing":
            rights = [e["match"]["right"] for e in rule["expr"]
                      if "match" in e and e["match"]["op"] == "!="]
            return {a for r in rights for a in (r["set"] if isinstance(r, dict) else [r])}
    raise AssertionError(f"no anti-spoofing rule in {base}-o")


def guard_tables(ns):
    return sorted(line for line in ns.exec("nft", "list", "tables").splitlines()
                  if re.search(r" one-[0-9]+-[0-9]+$", line))


def records(ns):
    found = set()
    for root, _, files in os.walk(os.path.join(ns.run_dir, "users")):
        found |= {f"{os.path.basename(root)}/{name}" for name in files}
    return found


def test_a_pre_whose_nft_transaction_is_refused_leaves_nothing(ns):
    """A base chain planted with the name of the NIC's inbound chain (the dispatch may
    not jump to it): the bridge is built and the wire guard written before the kernel
    refuses the transaction; all is undone."""
    stdin = b64(vm_xml(61, [bridge_nic(61, 0, "refbr", "uplink0", VN_MAD="fw", IP="10.62.0.61",
                                       SECURITY_GROUPS="7", FILTER_IP_SPOOFING="YES",
                                       FILTER_MAC_SPOOFING="YES")],
                       extra=reliability.RULES))
    ns.exec("nft", "-f", "-", input=b"add table bridge vnm\nadd chain bridge vnm one-61-0-i "
                                    b"{ type filter hook forward priority 10; }\n")
    try:
        before = vnm_table(ns), guard_tables(ns), records(ns)
        done = ns.run("fw", "pre", stdin=stdin)
        assert_one_error(done, "nft")
        assert "refbr" not in ns.links()
        assert ns.links()["uplink0"]["master"] is None
        assert (vnm_table(ns), guard_tables(ns), records(ns)) == before
    finally:
        ns.exec("nft", "delete", "chain", "bridge", "vnm", "one-61-0-i")


def test_torture_mixed_actions_over_shared_bridges(ns):
    rng = random.Random(7)
    scripts = {vm_id: script(rng, rng.choice((1, 1, 2))) for vm_id in range(10, 14)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(scripts)) as pool:
        failures = [f for result in pool.map(lambda item: run_script(ns, *item), scripts.items())
                    for f in result]
    assert not failures, failures[:3]

    alive = sorted(v for v, s in scripts.items() if s[-1] != "clean")
    dead = sorted(set(scripts) - set(alive))
    table = vnm_table(ns)
    taps = {f"one-{v}-0" for v in alive}
    assert alive and dead
    assert dispatch(ns, "nic_in") == {t: f"{t}-i" for t in taps}
    assert dispatch(ns, "nic_out") == {t: f"{t}-o" for t in taps}
    for vm_id in alive:
        assert f"chain one-{vm_id}-0-i " in table and f"chain one-{vm_id}-0-o " in table
        assert spoofing_addresses(ns, f"one-{vm_id}-0") == {f"10.70.0.{vm_id}"}
    for vm_id in dead:
        assert f"one-{vm_id}-0" not in table, vm_id
    assert guard_tables(ns) == sorted(f"table netdev one-{v}-0" for v in alive)
    assert records(ns) == {f"{BRIDGES[v % len(BRIDGES)]}/{v}-0" for v in alive}


def snapshot(ns):
    links = sorted((name, link["master"], link["up"]) for name, link in ns.links().items())
    rundir = sorted((os.path.basename(root), tuple(sorted(files)))
                    for root, _, files in os.walk(os.path.join(ns.run_dir, "users")) if files)
    return links, vnm_table(ns), guard_tables(ns), rundir


def test_sigkill_at_any_point_then_rerun_converges(ns, monkeypatch):
    monkeypatch.setattr(reliability, "TREE", ns.tree)  # killed() runs the nft tree
    reliability.sigkill_then_rerun(ns, vm(5, "cbr0"), "one-5-0", snapshot, 3)