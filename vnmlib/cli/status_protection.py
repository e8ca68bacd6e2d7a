"""Does a protected NIC's traffic really reach its chains? (vnm status; doctor's global check)

Chains that exist protect nothing when no packet reaches them: another
program's ``FORWARD … --physdev-is-bridged -j ACCEPT`` inserted ahead of
vnm's jump, a flushed ``opennebula`` chain, a family whose chains or jumps
are missing, a set the rules name that is gone. Checked here on the
``iptables -S`` / ``ip6tables -S`` listings, per family:

- ``FORWARD`` has vnm's jump to ``opennebula`` (bridged or routed, as the
  NIC's own jumps are) and no rule before it that ACCEPTs the NIC's traffic;
- ``opennebula`` jumps to the NIC's ``-i`` and ``-o`` chains (``INPUT`` to
  ``-o``) and accepts nothing before those jumps;
- the NIC's chains exist in both families and are not empty;
- every ipset its rules match on exists.

A rule ahead of vnm's jump does not count when it cannot match the NIC's
traffic: ``! --physdev-is-bridged``, only RELATED/ESTABLISHED connections
(vnm's chains let those through too), or ``-i``/``-o`` naming another
interface than the NIC's bridge. Jumps into other programs' chains are not
followed.
"""

import re

from vnmlib.firewall.layout import BRIDGED_FORWARD, FAMILIES, GLOBAL_CHAIN, ROUTED_FORWARD

_ACCEPTED_STATES = {"RELATED", "ESTABLISHED"}


def parse(lines):
    """``iptables -S`` lines -> (set of chains, {chain: [tokens of each rule]})."""
    chains, rules = set(), {}
    for line in lines:
        words = line.split()
        if len(words) > 1 and words[0] in ("-N", "-P"):
            chains.add(words[1])
            rules.setdefault(words[1], [])
        elif len(words) > 1 and words[0] == "-A":
            rules.setdefault(words[1], []).append(tuple(words[2:]))
    return chains, rules


def _target(tokens):
    return tokens[tokens.index("-j") + 1] if "-j" in tokens else None


def _value(tokens, option):
    """The value of ``option`` when present and not negated, else None."""
    if option in tokens:
        index = tokens.index(option)
        if index == 0 or tokens[index - 1] != "!":
            return tokens[index + 1] if index + 1 < len(tokens) else None
    return None


def _interface_matches(pattern, name):
    return pattern == name or (pattern.endswith("+") and name.startswith(pattern[:-1]))


def _may_accept(tokens, bridge):
    """Whether a rule ACCEPTs traffic of a NIC on ``bridge`` (None: any bridge)."""
    if _target(tokens) != "ACCEPT":
        return False
    if re.search(r"(^| )! --physdev-is-bridged( |$)", " ".join(tokens)):
        return False
    states = _value(tokens, "--ctstate") or _value(tokens, "--state")
    if states and set(states.split(",")) <= _ACCEPTED_STATES:
        return False
    for option in ("-i", "-o"):
        pattern = _value(tokens, option)
        if pattern and (bridge is None or not _interface_matches(pattern, bridge)):
            return False
    return True


def _shown(chain, tokens):
    return " ".join(("-A", chain) + tokens)


def forward_bypasses(rules, jump, bridge):
    """[(position, rule text)] of FORWARD rules before ``jump`` that may accept the traffic."""
    forward = rules.get("FORWARD", [])
    end = forward.index(jump) if jump in forward else len(forward)
    return [(i + 1, _shown("FORWARD", t)) for i, t in enumerate(forward[:end])
            if _may_accept(t, bridge)]


def nic_problems(tables, base, bridge, ipsets):
    """Why the traffic of NIC ``base`` (on ``bridge``) may not reach its chains: [phrases].

    ``tables``: {family: ``iptables -S`` lines}; ``ipsets``: the sets that exist.
    """
    parsed = {f: parse(tables.get(f, ())) for f in FAMILIES}
    chain_in, chain_out = f"{base}-i", f"{base}-o"
    if not any(chain_in in chains or chain_out in chains for chains, _ in parsed.values()):
        return []  # not protected by vnm: nothing to verify
    jumps = {f: {c: [i for i, t in enumerate(parsed[f][1].get(GLOBAL_CHAIN, []))
                     if _target(t) == c] for c in (chain_in, chain_out)} for f in FAMILIES}
    bridged = any("--physdev-is-bridged" in parsed[f][1][GLOBAL_CHAIN][i]
                  for f in FAMILIES for i in jumps[f][chain_out])
    if not any(positions for f in FAMILIES for positions in jumps[f].values()):
        return [f"{GLOBAL_CHAIN} jumps to none of its chains in either family (flushed?)"]
    found = []
    for family in FAMILIES:
        chains, rules = parsed[family]
        where = f"IPv{family}"
        to_chain = jumps[family]
        if not bridged and not any(to_chain.values()):
            continue  # routed, and no address of this family: no jumps by design
        missing = [c for c in (chain_in, chain_out) if c not in chains]
        if missing:
            found.append(f"{where}: chain {', '.join(missing)} missing")
            continue
        found += [f"{where}: chain {c} is empty (no DROP: everything passes)"
                  for c in (chain_in, chain_out) if not rules.get(c)]
        glob = rules.get(GLOBAL_CHAIN, [])
        jump = BRIDGED_FORWARD if bridged else ROUTED_FORWARD
        if jump not in rules.get("FORWARD", []):
            found.append(f"{where}: FORWARD has no '{' '.join(jump)}' jump")
        found += [f"{where}: FORWARD rule {n} ({text}) accepts its traffic before vnm's jump"
                  for n, text in forward_bypasses(rules, jump, bridge)]
        for chain, positions in to_chain.items():
            if not positions:
                if chain == chain_out or bridged:
                    found.append(f"{where}: {GLOBAL_CHAIN} does not jump to {chain}")
                continue
            accepts = [i for i, t in enumerate(glob[:min(positions)]) if _may_accept(t, bridge)]
            if accepts:
                found.append(f"{where}: {GLOBAL_CHAIN} rule {accepts[0] + 1} accepts before "
                             f"the jump to {chain}")
        if not any(_target(t) == chain_out for t in rules.get("INPUT", [])):
            found.append(f"{where}: INPUT does not jump to {chain_out} (VM to host traffic)")
        named = {t[t.index("--match-set") + 1] for c in (chain_in, chain_out)
                 for t in rules.get(c, []) if "--match-set" in t}
        found += [f"{where}: ipset {name} its rules match on does not exist"
                  for name in sorted(named - set(ipsets))]
    return found


def global_problems(tables):
    """[(family, phrase)] about vnm's global chains, for ``vnm doctor``."""
    found = []
    present = {}
    for family in FAMILIES:
        chains, rules = parse(tables.get(family, ()))
        present[family] = GLOBAL_CHAIN in chains
        nics = {c for c in chains if re.match(r"^one-[0-9]+-[0-9]+-[io]$", c)}
        if not present[family]:
            if nics:
                found.append((family, f"{len(nics)} NIC chains but no {GLOBAL_CHAIN} chain: "
                                      "no traffic reaches them"))
            continue
        jumps = [j for j in (BRIDGED_FORWARD, ROUTED_FORWARD) if j in rules.get("FORWARD", [])]
        if not jumps:
            found.append((family, f"FORWARD does not jump to {GLOBAL_CHAIN}"))
        for jump in jumps:
            found += [(family, f"FORWARD rule {n} ({text}) accepts bridged or routed traffic "
                               f"before vnm's jump") for n, text in
                      forward_bypasses(rules, jump, None)]
        jumped = {_target(t) for t in rules.get(GLOBAL_CHAIN, [])}
        orphans = sorted(c for c in nics if c.endswith("-o") and c not in jumped)
        if orphans:
            found.append((family, f"{GLOBAL_CHAIN} does not jump to {', '.join(orphans[:5])}"
                                  + (" …" if len(orphans) > 5 else "")))
    if present[4] != present[6]:
        missing = 6 if present[4] else 4
        found.append((missing, f"the {GLOBAL_CHAIN} chain exists in IPv{10 - missing} only"))
    return found
