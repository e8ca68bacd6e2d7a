"""Reliability: concurrency torture and crash consistency, on the fw driver in a namespace.

- Torture: 20 VMs on 3 shared bridges each run their own lifecycle (pre, the
  hypervisor's tap, post, update_sg…, and for some unplug + clean, or a second
  life) all at once: ~100 actions. None may fail, and the final kernel state is
  exactly the surviving VMs' (chains, jumps, ipsets, bridges, records).
- Crash consistency: pre / post / clean killed with SIGKILL (the whole process
  group, as a timeout would) at a random instant; running the action again must
  succeed and give the state an undisturbed run gives; clean then leaves the
  namespace as it was.

``VNM_LONG=1`` runs the long variants (50 VMs, ~210 actions; 200 crash trials).
"""

import concurrent.futures
import os
import random
import re
import signal
import subprocess
import time

from support.assertions import assert_ok
from support.firewall import ipsets
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import PYTHON, TREE

LONG = os.environ.get("VNM_LONG") == "1"
BRIDGES = ("tbr0", "tbr1", "tbr2")
RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22,80", SECURITY_GROUP_ID=7),
                  dict(PROTOCOL="UDP", RULE_TYPE="INBOUND", IP="10.71.0.0", SIZE="256",
                       SECURITY_GROUP_ID=7),
                  dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=8))


def vm(vm_id, bridge=None):
    nic = bridge_nic(vm_id, 0, bridge or BRIDGES[vm_id % len(BRIDGES)], VN_MAD="fw",
                     IP=f"10.70.0.{vm_id}", SECURITY_GROUPS="7,8", FILTER_IP_SPOOFING="YES",
                     FILTER_MAC_SPOOFING="YES")
    return b64(vm_xml(vm_id, [nic], extra=RULES))


ARGS = {"pre": (), "post": ("one-x", "node1"), "update_sg": ("one-x",), "clean": ("node1",)}


def script(rng, lives):
    """One VM's life as oned and the hypervisor drive it, ending alive or not."""
    steps = []
    for life in range(lives):
        steps += ["pre", "plug", "post"] + ["update_sg"] * rng.randint(0, 2)
        if life < lives - 1 or rng.random() < 0.5:
            steps += ["unplug", "clean"]
    return steps


def run_script(ns, vm_id, steps):
    stdin, failures = vm(vm_id), []
    tap = f"one-{vm_id}-0"
    for step in steps:
        if step == "plug":
            ns.add_tap(tap, BRIDGES[vm_id % len(BRIDGES)])
        elif step == "unplug":
            ns.ip("link", "del", tap)
        else:
            done = ns.run("fw", step, *ARGS[step], stdin=stdin)
            if done.returncode != 0:
                failures.append(f"VM {vm_id} {step}: {done.stderr.decode()}")
    return failures


def normalised(lines, vm_id):
    """A VM's rules with its own ids and addresses replaced, to compare VMs."""
    return [re.sub(rf"one-{vm_id}-0|10\.70\.0\.{vm_id}\b|02:00:0a:00:{vm_id:02x}:00", "X", line)
            for line in lines]


def test_torture_mixed_actions_over_shared_bridges(ns):
    rng = random.Random(7)
    vms = 50 if LONG else 20
    scripts = {vm_id: script(rng, rng.choice((1, 1, 2))) for vm_id in range(10, 10 + vms)}
    actions = sum(step not in ("plug", "unplug") for s in scripts.values() for step in s)
    assert actions >= (200 if LONG else 90)
    with concurrent.futures.ThreadPoolExecutor(max_workers=vms) as pool:
        failures = [f for result in pool.map(lambda item: run_script(ns, *item), scripts.items())
                    for f in result]
    assert not failures, failures[:3]

    alive = sorted(v for v, s in scripts.items() if s[-1] != "clean")
    dead = sorted(set(scripts) - set(alive))
    assert alive and dead
    rules = ns.exec("iptables", "-w", "-S").splitlines()
    links = ns.links()
    sets = ipsets(ns)
    reference = None
    for vm_id in alive:
        mine = [line for line in rules if f"one-{vm_id}-0-" in line or f"one-{vm_id}-0 " in line]
        if reference is None:
            reference = normalised(mine, vm_id)
        assert normalised(mine, vm_id) == reference, vm_id
        assert links[f"one-{vm_id}-0"]["master"] == BRIDGES[vm_id % len(BRIDGES)]
        assert sets[f"one-{vm_id}-0-ip-spoofing"] == {f"10.70.0.{vm_id}"}
    assert "-A X-i -j DROP" in reference and "-A X-o -j DROP" in reference
    for vm_id in dead:
        assert not any(f"one-{vm_id}-0" in line for line in rules), vm_id
        assert not any(name.startswith(f"one-{vm_id}-") for name in sets), vm_id
    used = {BRIDGES[v % len(BRIDGES)] for v in alive}
    assert {b for b in BRIDGES if b in links} == used
    records = set()
    for root, _, files in os.walk(os.path.join(ns.run_dir, "users")):
        records |= {f"{os.path.basename(root)}/{name}" for name in files}
    assert records == {f"{BRIDGES[v % len(BRIDGES)]}/{v}-0" for v in alive}


# -- crash consistency ---------------------------------------------------------------------

def snapshot(ns):
    links = sorted((name, link["master"], link["up"]) for name, link in ns.links().items())
    tables = [re.sub(r"\[\d+:\d+\]", "", line) for tool in ("iptables-save", "ip6tables-save")
              for line in ns.exec(tool, "-t", "filter").splitlines() if not line.startswith("#")]
    records = sorted((os.path.basename(root), tuple(sorted(files)))
                     for root, _, files in os.walk(os.path.join(ns.run_dir, "users")) if files)
    return links, tables, ipsets(ns), records


def killed(ns, action, stdin, delay):
    """Start ``action``, SIGKILL its whole process group after ``delay`` seconds."""
    env = dict(os.environ, VNM_RUN_DIR=ns.run_dir)
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, PYTHON,
                             os.path.join(TREE, "fw", action), *ARGS[action]],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    proc.stdin.write(stdin)
    proc.stdin.close()
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it finished first
    proc.wait()


def sigkill_then_rerun(ns, stdin, tap, state, trials):
    """pre, post and clean of ``stdin``'s VM (its NIC's tap ``tap`` on cbr0), each killed
    with SIGKILL at a random point ``trials`` times in turn, then run again: the host's
    ``state(ns)`` is then what the undisturbed action gives."""

    def prepare(action):
        """The host as it is when oned runs ``action``."""
        if action in ("post", "clean"):
            assert_ok(ns.run("fw", "pre", stdin=stdin))
            ns.add_tap(tap, "cbr0")
            if action == "clean":
                assert_ok(ns.run("fw", "post", *ARGS["post"], stdin=stdin))
                ns.ip("link", "del", tap)

    def finish(action):
        """Back to the baseline after ``action`` (tap gone, then clean)."""
        if tap in ns.links():
            ns.ip("link", "del", tap)
        if action != "clean":
            assert_ok(ns.run("fw", "clean", *ARGS["clean"], stdin=stdin))
        assert state(ns) == baseline

    # one whole life first: the global chains it creates stay for good
    prepare("clean")
    assert_ok(ns.run("fw", "clean", *ARGS["clean"], stdin=stdin))
    baseline = state(ns)
    # what each action gives undisturbed, and how long it takes
    expected, duration = {}, {}
    for action in ("pre", "post", "clean"):
        prepare(action)
        start = time.monotonic()
        assert_ok(ns.run("fw", action, *ARGS[action], stdin=stdin))
        duration[action] = time.monotonic() - start
        expected[action] = state(ns)
        finish(action)

    rng = random.Random(11)
    for trial in range(trials):
        action = ("pre", "post", "clean")[trial % 3]
        prepare(action)
        killed(ns, action, stdin, rng.uniform(0, duration[action] * 1.2))
        done = ns.run("fw", action, *ARGS[action], stdin=stdin)
        assert done.returncode == 0, f"trial {trial} {action}: {done.stderr.decode()}"
        assert state(ns) == expected[action], f"trial {trial}: {action} did not converge"
        finish(action)


def test_sigkill_at_any_point_then_rerun_converges(ns):
    sigkill_then_rerun(ns, vm(5, "cbr0"), "one-5-0", snapshot, 200 if LONG else 12)


def test_namespace_guard_still_refuses_a_foreign_sysfs(ns):
    """The churn-tolerant check still catches a process that entered the namespace
    without remounting /sys (nsenter --net): sysfs then shows the host's links."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from vnmlib.host import sysfs\n"
            "try:\n    sysfs.check_same_namespace()\nexcept Exception as exc:\n    print(exc)\n")
    done = subprocess.run(["nsenter", f"--net=/run/netns/{ns.name}", PYTHON, "-c", code,
                           os.path.dirname(TREE)], capture_output=True, text=True, check=True)
    assert "does not show this network namespace's links" in done.stdout
    inside = subprocess.run(["ip", "netns", "exec", ns.name, PYTHON, "-c", code,
                             os.path.dirname(TREE)], capture_output=True, text=True, check=True)
    assert inside.stdout == ""
