"""The nft backend's footprints and its scoped reads (no root, no kernel): what an
update of some NICs reads of ``table bridge vnm`` instead of the whole table."""

import pytest

from vnmlib.firewall import backend_nft, l2guard, nft_footprint, nft_render
from vnmlib.firewall.nft_render import MAP_IN, MAP_OUT, MAP_ROUTED

from test_nft_render import VM7, build, lines


@pytest.fixture(autouse=True)
def run_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VNM_RUN_DIR", str(tmp_path))


def test_a_footprint_is_written_read_widened_and_forgotten():
    nf = build(VM7, 1)
    new = nft_footprint.wanted(nf, nft_render.dispatch_of(nf))
    # no named set: its sets are in its rules
    assert new == {"sets": [], "taps": {MAP_IN: [nf.tap], MAP_OUT: [nf.tap]},
                   "guard": "\n".join(nf.guard.script())}
    assert not nft_footprint.known(nf.chain)
    assert nft_footprint.of(nf.chain) == {"sets": [], "taps": {}, "guard": None}
    # an older vnm's record: named sets, another tap
    old = {"sets": ["one-7-1-9-i-tcp-n-inet"], "taps": {MAP_IN: ["vnet3"]}}
    nft_footprint.save({nf.chain: nft_footprint.union(old, new)})
    assert nft_footprint.of(nf.chain) == {
        "sets": ["one-7-1-9-i-tcp-n-inet"],
        "taps": {MAP_IN: sorted(["vnet3", nf.tap]), MAP_OUT: [nf.tap]},
        "guard": None}  # which guard is in the kernel is not known while the commit goes in
    nft_footprint.forget([nf.chain, "one-99-0"])
    assert not nft_footprint.known(nf.chain)


def test_the_table_record_is_there_only_once_the_table_was_adopted():
    assert nft_footprint.table() is None
    nft_footprint.adopt({"one-5-0": {"sets": [], "taps": {MAP_IN: ["one-5-0"]}}}, routed=True)
    assert nft_footprint.table() == {"routed": True} and nft_footprint.known("one-5-0")
    nft_footprint.drop_table()
    assert nft_footprint.table() is None and nft_footprint.known("one-5-0")


def test_scoped_state_is_the_nics_footprints_and_asks_the_kernel_nothing(monkeypatch):
    nf = build(VM7, 1)
    nft_footprint.save({nf.chain: {"sets": ["one-7-1-ip-spoofing"],
                                   "taps": {MAP_IN: ["vnet3", nf.tap], MAP_OUT: [nf.tap],
                                            MAP_ROUTED: ["vnet3"]}}})
    monkeypatch.setattr(backend_nft, "run", lambda *a, **k: pytest.fail("asked the kernel"))
    state = backend_nft._scoped_state([nf], routed=False)
    assert state.exists and state.sets == {"one-7-1-ip-spoofing"}
    # no routed map on this table: its record is not dispatch
    assert state.dispatch == {MAP_IN: {"vnet3": nf.chain_in, nf.tap: nf.chain_in},
                              MAP_OUT: {nf.tap: nf.chain_out}}
    assert "output" not in state.chains
    script = lines(backend_nft.Plan(state, [nf], [], True).script)
    # the tap that changed loses its dispatch; the NIC's own is declared again all the same
    assert script[0] == f'delete element bridge vnm {MAP_IN} {{ "vnet3" }}'
    assert script[-2:] == [
        f'add map bridge vnm {MAP_IN} {{ type ifname : verdict; elements = '
        f'{{ "{nf.tap}" : jump {nf.chain_in} }}; }}',
        f'add map bridge vnm {MAP_OUT} {{ type ifname : verdict; elements = '
        f'{{ "{nf.tap}" : jump {nf.chain_out} }}; }}']
    # a named set the record has (an older vnm's) goes, once no rule of the NIC matches it
    assert script.index("delete set bridge vnm one-7-1-ip-spoofing") > \
        script.index(f"flush chain bridge vnm {nf.chain_out}")


def test_without_the_table_record_the_table_is_read_whole(monkeypatch):
    nf = build(VM7, 1)
    monkeypatch.setattr(backend_nft, "read_state", lambda: nft_render.TableState())
    planned = backend_nft.plan([nf], [])
    assert not planned.scoped and lines(planned.script)[0] == "add table bridge vnm"
    nft_footprint.adopt({}, routed=False)
    assert backend_nft.plan([nf], []).scoped
    assert not backend_nft.plan([nf], [nf.chain]).scoped  # a removal reads it whole


def test_a_refused_scoped_transaction_is_planned_again_from_the_whole_table(monkeypatch):
    nf = build(VM7, 1)
    nft_footprint.adopt({nf.chain: {"sets": ["one-7-1-gone"], "taps": {}}}, routed=False)
    sent = []

    def run(script, **_):
        sent.append(script)
        refused = "delete set bridge vnm one-7-1-gone" in script
        return (False, "", "Error: Could not process rule: No such file or directory\n") \
            if refused else (True, "", "")

    monkeypatch.setattr(backend_nft, "run", run)
    monkeypatch.setattr(backend_nft, "read_state", lambda: nft_render.TableState(
        True, ["opennebula", nf.chain_in, nf.chain_out, "one-8-0-i", "one-8-0-o"],
        ["one-8-0-ip-spoofing"], {MAP_IN: {"one-8-0": "one-8-0-i"}, MAP_OUT: {}}))
    backend_nft.commit(backend_nft.plan([nf], []))
    assert len(sent) == 2 and "one-7-1-gone" not in sent[1]
    # the whole table adopted: the other NIC's footprint from what was read
    assert nft_footprint.table() == {"routed": False}
    assert nft_footprint.of("one-8-0") == {"sets": ["one-8-0-ip-spoofing"],
                                           "taps": {MAP_IN: ["one-8-0"], MAP_OUT: []},
                                           "guard": None}
    assert nft_footprint.of(nf.chain)["sets"] == []  # its sets are in its rules


def test_the_wire_guards_go_in_the_tables_own_transaction(monkeypatch):
    """One libnftables run for guards and table (nft fetches its cache once per run)."""
    nf = build(VM7, 1)
    sent = []
    monkeypatch.setattr(backend_nft, "run", lambda script, **_: sent.append(script) or
                        (True, "", ""))
    monkeypatch.setattr(backend_nft, "read_state", lambda: nft_render.TableState())
    guards = "table netdev one-7-1\ndelete table netdev one-7-1\n"
    backend_nft.commit(backend_nft.plan([nf], []), guards)
    assert len(sent) == 1 and sent[0].startswith(guards) and "add table bridge vnm" in sent[0]
    # a removal from a host without the table: the guards' removal alone
    backend_nft.commit(backend_nft.plan([], ["one-9-0"]), guards)
    assert sent[1:] == [guards]


def test_a_guard_is_left_as_it_is_only_when_its_record_and_the_kernel_say_so(monkeypatch):
    """An update's guard whose table is in the netdev family only and whose text its
    footprint recorded is not in the transaction (rewriting it is a delete, for which
    nft fetches every chain and set first); a new table is only added; any other, or one
    whose existence the kernel would not tell, is deleted and written again."""
    nf = build(VM7, 1)
    guard, table = nf.guard, nf.guard.table
    states = {}
    monkeypatch.setattr(l2guard, "_exists", lambda family, name: states[family])
    nft_footprint.save({table: nft_footprint.wanted(nf, nft_render.dispatch_of(nf))})

    def script():
        return backend_nft.guards_script([guard], [])

    states.update(netdev=True, bridge=False)
    assert script() == ""
    states.update(netdev=False, bridge=True)  # pre's interim table: replaced
    assert script().startswith(f"table netdev {table}\ndelete table netdev {table}\n")
    states.update(netdev=False, bridge=False)
    assert script().startswith(f"add table netdev {table}\n")
    states.update(netdev=True, bridge=None)
    assert "delete table" in script()
    states.update(netdev=True, bridge=False)
    guard.own4 = ["10.0.1.9"]  # the NIC's addresses changed: another guard
    assert "delete table netdev" in script() and "10.0.1.9" in script()
    nft_footprint.save({table: nft_footprint.union(nft_footprint.of(table),
                                                   nft_footprint.wanted(nf, []))})
    assert "delete table netdev" in script()  # a commit under way: not known
