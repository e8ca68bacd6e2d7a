"""A corrupted run directory (issue 28.6): one WARN line per bad entry, repaired or ignored.

Each case damages one entry of the test's run directory the way a crash, a
full disk or a mistaken admin would, then runs the actions, ``vnm status``
and ``vnm doctor``: no Python error, each bad entry named once.
"""

import json
import os
import shutil

from support.assertions import assert_ok
from support.fault_injection import netns_dir, vnm
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))


def bridge_vm(vm_id, bridge="rdbr"):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge)]))


def fw_vm(vm_id, bridge="rdbr"):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, VN_MAD="fw", IP=f"10.6.0.{vm_id}",
                                         SECURITY_GROUPS="5")], extra=RULES))


def warnings(text):
    return [line for line in text.splitlines() if line.startswith("WARN:")]


def no_python_error(done):
    err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode()
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def doctor_rows(ns):
    done = vnm(ns, "doctor", "--json")
    no_python_error(done)
    return [r for r in json.loads(done.stdout) if r["check"].startswith("run directory entr")]


def test_a_file_where_a_bridges_record_directory_belongs(ns):
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(91)))
    users = netns_dir(ns.run_dir, "users")
    shutil.rmtree(os.path.join(users, "rdbr"))
    with open(os.path.join(users, "rdbr"), "w") as handle:
        handle.write("junk")
    bad = os.path.join(users, "rdbr")

    status = vnm(ns, "status")
    err = no_python_error(status)
    assert warnings(err) == [f"WARN: status: {bad} is not a directory of records: ignored"], err
    [row] = doctor_rows(ns)
    assert row["status"] == "warn" and row["detail"] == f"{bad}: not a directory"
    # pre repairs it (the record is written again), clean then works as usual
    done = assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(91)))
    assert warnings(done.stderr.decode()) == [
        f"WARN: pre: {bad} is not a directory: replaced by one"]
    assert os.path.isfile(os.path.join(bad, "91-0"))
    done = assert_ok(ns.run("bridge", "clean", "node1", stdin=bridge_vm(91)))
    no_python_error(done)
    assert "rdbr" not in ns.links()
    assert doctor_rows(ns)[0]["status"] == "ok"


def test_clean_with_a_file_for_the_record_directory_is_not_an_internal_error(ns):
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(92)))
    users = netns_dir(ns.run_dir, "users")
    shutil.rmtree(os.path.join(users, "rdbr"))
    open(os.path.join(users, "rdbr"), "w").close()
    done = assert_ok(ns.run("bridge", "clean", "node1", stdin=bridge_vm(92)))
    err = no_python_error(done)
    assert len(warnings(err)) == 1 and os.path.join(users, "rdbr") in err, err
    assert "rdbr" not in ns.links() and not os.path.lexists(os.path.join(users, "rdbr"))


def test_a_garbage_record_is_named_and_keeps_no_bridge(ns):
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(93)))
    users = netns_dir(ns.run_dir, "users")
    garbage = os.path.join(users, "rdbr", "not-a-nic")
    open(garbage, "w").close()
    status = vnm(ns, "status", "--json")
    err = no_python_error(status)
    assert warnings(err) == [f"WARN: status: {garbage} is not a <vm>-<nic> record: ignored"]
    assert [n["records"] for n in json.loads(status.stdout)] == [["rdbr"]]
    assert [r["detail"] for r in doctor_rows(ns)] == [f"{garbage}: not a <vm>-<nic> record"]
    done = assert_ok(ns.run("bridge", "clean", "node1", stdin=bridge_vm(93)))
    assert warnings(done.stderr.decode()) == [
        f"WARN: clean: {garbage} is not a <vm>-<nic> record: ignored"]
    assert "rdbr" not in ns.links()  # the garbage kept nothing


def test_a_directory_where_a_lock_file_belongs_is_replaced(ns):
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(94)))
    locks = netns_dir(ns.run_dir, "locks")
    lock = os.path.join(locks, "link.rdbr")
    os.unlink(lock)
    os.mkdir(lock)
    assert [r["detail"] for r in doctor_rows(ns)] == [f"{lock}: not a regular file"]
    done = assert_ok(ns.run("bridge", "clean", "node1", stdin=bridge_vm(94)))
    assert warnings(done.stderr.decode()) == [
        f"WARN: clean: lock file {lock} was a directory: replaced"]
    assert os.path.isfile(lock) and "rdbr" not in ns.links()


def test_the_lock_directory_as_a_file_is_replaced(ns):
    os.makedirs(ns.run_dir, exist_ok=True)
    with open(os.path.join(ns.run_dir, "locks"), "w") as handle:
        handle.write("junk")
    done = assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(95)))
    bad = os.path.join(ns.run_dir, "locks")
    assert warnings(done.stderr.decode()) == [
        f"WARN: pre: {bad} is not a directory: replaced by one"]
    assert "rdbr" in ns.links()


def test_unreadable_and_garbage_start_times_are_ignored(ns):
    stdin = fw_vm(96)
    assert_ok(ns.run("fw", "pre", stdin=stdin))
    ns.add_tap("one-96-0", "rdbr")
    assert_ok(ns.run("fw", "post", "one-96", "node1", stdin=stdin))
    started = netns_dir(ns.run_dir, "sg-started")
    record = os.path.join(started, "one-96-0")
    with open(record, "w") as handle:
        handle.write("\x00garbage")
    assert [r["detail"] for r in doctor_rows(ns)] == [f"{record}: does not hold a start time"]
    done = assert_ok(ns.run("fw", "update_sg", "one-96", "node1", stdin=stdin))
    assert warnings(done.stderr.decode()) == [
        f"WARN: update_sg: {record} does not hold a start time: ignored"]
    assert "protection of one-96-0 applied" in done.stderr.decode()
    with open(record) as handle:
        assert handle.read().strip().isdigit()  # repaired by the update
    os.unlink(record)
    os.mkdir(record)  # unreadable as a file
    done = assert_ok(ns.run("fw", "update_sg", "one-96", "node1", stdin=stdin))
    assert [w.split(" (")[0] for w in warnings(done.stderr.decode())] == [
        f"WARN: update_sg: {record} is unreadable"]
    assert os.path.isfile(record)
    status = vnm(ns, "status")
    no_python_error(status)
    assert status.returncode == 0, status.stdout
