"""Replay of the reference scenarios for bridge (golden A) and dummy (golden E).

The reference ran every driver of vm7; we replay the bridge driver's steps and
compare exit codes and the links it owns (br0, uplink0, the tap one-7-0).
"""

from support import golden
from support.paths import fixture_bytes

VM7 = fixture_bytes("vm7_vnm_reduced.b64")
VM7_DETACH = fixture_bytes("vm7_attach_nic1_reduced.b64")
OURS = {"br0", "uplink0", "one-7-0"}


def our_state(ns):
    links = ns.links()
    masters = {name: link["master"] for name, link in links.items() if link["master"]}
    return golden.restrict(set(links), masters, OURS)


def expected(state_file):
    return golden.restrict(*golden.state("A", state_file), OURS)


def replay(ns, scenario, step, stdin):
    driver, action, args = golden.argv(scenario, step)
    done = ns.run(driver, action, *args, stdin=stdin)
    assert done.returncode == golden.rc(scenario, step), done.stderr.decode()
    return done


def test_scenario_a_bridge_steps(ns):
    replay(ns, "A", "01-pre-bridge", VM7)
    assert our_state(ns) == expected("01-after-pre.state")
    ns.add_tap("one-7-0", "br0")  # the hypervisor plugs the VM in
    replay(ns, "A", "02-post-bridge", VM7)
    assert our_state(ns) == expected("02-after-post.state")
    replay(ns, "A", "03-update_sg-bridge", VM7)
    assert our_state(ns) == expected("03-after-update_sg.state")
    replay(ns, "A", "05-detach-nic1-clean-bridge", VM7_DETACH)
    assert our_state(ns) == expected("05-after-detach.state")
    ns.ip("link", "del", "one-7-0")  # shutdown: the hypervisor unplugs first
    replay(ns, "A", "06-clean-bridge", VM7)
    assert our_state(ns) == expected("06-after-clean.state")


def test_scenario_e_dummy_pre_and_bridge_vnet_create(ns):
    before = ns.links()
    done = replay(ns, "E", "01-pre-dummy", VM7)
    assert done.stderr == b""
    replay(ns, "E", "02-vnet_create-bridge", b"PFZORVQ+PElEPjc8L0lEPjwvVk5FVD4=")
    assert ns.links() == before
