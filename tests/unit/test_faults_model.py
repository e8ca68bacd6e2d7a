"""Issue 28's pure logic: the configured bounds, which rules bypass vnm's jump."""

import pytest

from vnmlib.model import waits
from vnmlib.cli.status_protection import forward_bypasses, global_problems, parse
from vnmlib.errors import InputError


@pytest.fixture(autouse=True)
def default_waits():
    yield
    waits.configure({})


def test_bounds_come_from_the_configuration_with_documented_defaults():
    waits.configure({})
    assert [waits.seconds(k) for k in ("lock_timeout", "tool_timeout", "xtables_wait")] == \
        [60, 30, 3]
    waits.configure({"lock_timeout": "2.5"})
    assert waits.seconds("lock_timeout") == 2.5 and waits.shown(2.5) == "2.5"


@pytest.mark.parametrize("value", [0, -1, "soon", True, None, [3]])
def test_a_bound_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(InputError, match=r"tool_timeout .* is not a positive number of seconds"):
        waits.configure({"tool_timeout": value})


JUMP = ("-m", "physdev", "--physdev-is-bridged", "-j", "opennebula")


@pytest.mark.parametrize("rule, bypasses", [
    ("-A FORWARD -j ACCEPT", True),
    ("-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT", True),
    ("-A FORWARD -s 10.0.0.0/8 -j ACCEPT", True),
    ("-A FORWARD -i onebr+ -j ACCEPT", True),
    ("-A FORWARD -o onebr1 -j ACCEPT", True),
    ("-A FORWARD -o docker0 -j ACCEPT", False),
    ("-A FORWARD ! -i onebr1 -j ACCEPT", True),
    ("-A FORWARD -m physdev ! --physdev-is-bridged -j ACCEPT", False),
    ("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", False),
    ("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT", True),
    ("-A FORWARD -j DROP", False),
    ("-A FORWARD -j DOCKER-USER", False),  # other programs' chains are not followed
])
def test_which_rules_ahead_of_vnms_jump_accept_a_nics_traffic(rule, bypasses):
    _, rules = parse([rule, "-A FORWARD " + " ".join(JUMP)])
    assert bool(forward_bypasses(rules, JUMP, "onebr1")) == bypasses
    # after the jump, nothing counts
    _, rules = parse(["-A FORWARD " + " ".join(JUMP), rule])
    assert forward_bypasses(rules, JUMP, "onebr1") == []


def test_global_problems_see_a_family_without_the_chain_and_orphaned_nic_chains():
    v4 = ["-P FORWARD ACCEPT", "-N opennebula", "-N one-1-0-i", "-N one-1-0-o",
          "-A FORWARD " + " ".join(JUMP), "-A opennebula -j ACCEPT"]
    v6 = ["-P FORWARD ACCEPT", "-N one-1-0-i", "-N one-1-0-o"]
    assert global_problems({4: v4, 6: v6}) == [
        (4, "opennebula does not jump to one-1-0-o"),
        (6, "2 NIC chains but no opennebula chain: no traffic reaches them"),
        (6, "the opennebula chain exists in IPv4 only")]
