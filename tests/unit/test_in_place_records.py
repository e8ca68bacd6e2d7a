"""What lets post skip rewriting a protection (vnmlib/firewall/in_place.py, recency.py):
the digest of a commit exists only once the commit went in, and the jumps must be
where the transaction puts them."""

from types import SimpleNamespace

import pytest

from vnmlib.firewall import in_place, recency
from vnmlib.firewall.transaction import TableSnapshot

NIC = SimpleNamespace(chain="one-5-0", chain_in="one-5-0-i", chain_out="one-5-0-o")


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VNM_RUN_DIR", str(tmp_path))
    return tmp_path


def test_a_digest_is_recorded_once_the_commit_went_in(run_dir):
    with recency.recorded([NIC], [], 10, {NIC.chain: "abc"}):
        assert recency.digests([NIC]) == {NIC.chain: None}  # during the commit: none
    assert recency.digests([NIC]) == {NIC.chain: "abc"}
    assert recency.applied(NIC.chain) == 10


def test_a_failed_commit_leaves_no_digest(run_dir):
    with recency.recorded([NIC], [], 10, {NIC.chain: "abc"}):
        pass
    with pytest.raises(RuntimeError):
        with recency.recorded([NIC], [], 20, {NIC.chain: "def"}):
            raise RuntimeError("the commit failed")
    # the old start time is back, but not the old digest: what the failure left is unknown
    assert recency.applied(NIC.chain) == 10
    assert recency.digests([NIC]) == {NIC.chain: None}


def test_clean_forgets_the_digest(run_dir):
    with recency.recorded([NIC], [], 10, {NIC.chain: "abc"}):
        pass
    with recency.recorded([], [NIC.chain], 20):
        pass
    assert recency.digests([NIC]) == {NIC.chain: None}


JUMP_I = ("-m", "physdev", "--physdev-out", "one-5", "--physdev-is-bridged", "-j", "one-5-0-i")
JUMP_O = ("-m", "physdev", "--physdev-in", "one-5", "-j", "one-5-0-o")
OTHER = ("-m", "physdev", "--physdev-in", "one-6", "-j", "one-6-0-o")
FOREIGN = ("-p", "tcp", "-j", "DROP")


def jumps(nic_jumps, *rules):
    snapshot = TableSnapshot(True, [], [("INPUT", r, r) for r in rules])
    return in_place._jumps_in_place(snapshot, SimpleNamespace(jumps={4: nic_jumps}), 4,
                                    {NIC.chain_in, NIC.chain_out})


@pytest.mark.parametrize("rules, expected", [
    ((JUMP_O, JUMP_I, FOREIGN), True),
    ((OTHER, JUMP_I, JUMP_O, FOREIGN), True),  # behind another NIC's jump: still first
    ((FOREIGN, JUMP_I, JUMP_O), False),  # another program's rule now decides first
    ((JUMP_I, JUMP_O, JUMP_O), False),  # twice
    ((JUMP_I,), False),  # one missing
])
def test_the_jumps_must_be_once_each_and_ahead(rules, expected):
    assert jumps([("INPUT", JUMP_I), ("INPUT", JUMP_O)], *rules) is expected
