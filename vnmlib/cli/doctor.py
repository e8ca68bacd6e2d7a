"""vnm doctor: can this host run the drivers? Kernel features, tools, configuration, permissions.

Kernel features are tried, not guessed: in a throwaway network namespace
doctor creates a bridge with VLAN filtering, an 802.1Q device, a VXLAN device
and a physdev rule, then deletes the namespace. Everything else is read-only.
Exit code 1 when a check fails that stops a driver from working.
"""

import os
import re
import shutil
import subprocess
import sys

import click

from vnmlib.cli import doctor_wire
from vnmlib.cli.output import emit

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _run(*argv):
    from vnmlib.model import waits

    limit = waits.seconds("tool_timeout")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=dict(os.environ, LC_ALL="C"), timeout=limit)
    except OSError as exc:
        return 127, "", exc.strerror
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not finish within {waits.shown(limit)} s (tool_timeout)"
    return done.returncode, done.stdout, done.stderr


def _first_line(text):
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def kernel_features():
    """(check, status, detail) for each feature, tried in a throwaway namespace."""
    if os.geteuid() != 0:
        return [("kernel features", WARN, "not tried: run doctor as root")]
    ns = f"vnm-doctor-{os.getpid()}"
    code, _, err = _run("ip", "netns", "add", ns)
    if code:
        return [("kernel features", FAIL, f"cannot create a network namespace: {_first_line(err)}")]
    tries = [
        ("bridge", FAIL, ["link", "add", "b0", "type", "bridge"], "every Linux-bridge driver"),
        ("bridge VLAN filtering", WARN, ["link", "set", "b0", "type", "bridge", "vlan_filtering",
                                         "1"], "VLAN_TAGGED_ID trunks, 802.1Q QinQ"),
        ("veth", WARN, ["link", "add", "u0", "type", "veth", "peer", "name", "u1"], "tests, demo"),
        ("802.1Q (8021q)", WARN, ["link", "add", "link", "u0", "name", "u0.5", "type", "vlan",
                                  "id", "5"], "the 802.1Q driver"),
        ("vxlan", WARN, ["link", "add", "vx5", "type", "vxlan", "id", "5", "dstport", "4789",
                         "dev", "u0"], "the vxlan and ovswitch_vxlan drivers"),
    ]
    found = []
    try:
        for name, severity, args, needed_by in tries:
            code, _, err = _run("ip", "-n", ns, *args)
            found.append((name, OK if code == 0 else severity,
                          "works" if code == 0 else f"{_first_line(err)} (needed by {needed_by})"))
        code, _, err = _run("ip", "netns", "exec", ns, "iptables", "-w", "-A", "FORWARD", "-m",
                            "physdev", "--physdev-is-bridged", "-j", "ACCEPT")
        found.append(("iptables physdev match", OK if code == 0 else FAIL,
                      "works" if code == 0 else
                      f"{_first_line(err)} (security groups of bridged NICs)"))
        sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        value = open(sysctl, encoding="ascii").read().strip() if os.path.exists(sysctl) else None
        found.append(("br_netfilter (bridge-nf-call-iptables)",
                      OK if value == "1" else FAIL,
                      "1" if value == "1" else
                      (f"is {value}" if value else "br_netfilter not loaded")
                      + ("" if value == "1" else
                         ": bridged traffic would bypass the security groups")))
    finally:
        _run("ip", "netns", "del", ns)
    return found


def tools():
    found = []
    for name, severity, argv, needed_by in (
            ("ip", FAIL, ["ip", "-V"], "every driver"),
            ("bridge", WARN, ["bridge", "-V"], "status, tests"),
            ("iptables", FAIL, ["iptables", "-V"], "security groups"),
            ("ip6tables", FAIL, ["ip6tables", "-V"], "security groups"),
            ("ipset", FAIL, ["ipset", "version"], "security groups"),
            ("nft", FAIL, ["nft", "--version"], "the wire guard of fw, 802.1Q and vxlan NICs"),
            ("ovs-vsctl", WARN, ["ovs-vsctl", "--version"], "ovswitch drivers"),
            ("ovs-ofctl", WARN, ["ovs-ofctl", "--version"], "ovswitch drivers")):
        path = shutil.which(argv[0], path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        if path is None:
            found.append((name, severity, f"not installed (needed by {needed_by})"))
            continue
        code, out, err = _run(path, *argv[1:])
        found.append((name, OK if code == 0 else severity, _first_line(out or err)))
    found.append(iptables_backends())
    return found


def iptables_backends():
    """nft or legacy, and a warning when the other backend holds rules too (mixed host)."""
    code, out, _ = _run("iptables", "-V")
    if code:
        return ("iptables backend", FAIL, "iptables not usable")
    backend = "nf_tables" if "nf_tables" in out else "legacy"
    other = "iptables-legacy-save" if backend == "nf_tables" else "iptables-nft-save"
    code, saved, _ = _run(other)
    rules = [line for line in saved.splitlines() if line.startswith("-A")] if code == 0 else []
    if rules:
        return ("iptables backend", WARN,
                f"{backend}, but {other} shows {len(rules)} rules: a mixed-backend host; the "
                "two sets of tables filter independently")
    return ("iptables backend", OK, backend)


def global_chains(tree):
    """vnm's global chains in both families: present, jumped to, not bypassed, read
    through the configured firewall backend (with ``nft``, its bridge table said in
    iptables' terms), so the line is about the rules that really protect the NICs."""
    from vnmlib.cli.status_protection import global_problems
    from vnmlib.errors import VnmError
    from vnmlib.firewall import backend_of
    from vnmlib.model import config

    try:
        backend = backend_of(config.load(config.conf_path(tree)))
        tables = backend.list_tables()
    except VnmError as exc:  # a bad conf is configuration()'s finding
        return [("vnm chains", WARN, f"not read: {_first_line(str(exc))}")]
    unread = [f"IPv{family}" for family in (4, 6) if family not in tables]
    if unread:
        return [("vnm chains", WARN, f"the {backend.__name__.rsplit('_', 1)[-1]} backend "
                                     f"could not read {' and '.join(unread)}")]
    found = [(f"vnm chains (IPv{family})", FAIL, problem)
             for family, problem in global_problems(tables)]
    return found or [("vnm chains", OK, "opennebula chains, FORWARD jumps: in place or not "
                                        "made yet")]


def configuration(tree):
    from vnmlib.model import config, waits
    from vnmlib.errors import VnmError

    found = []
    path = config.conf_path(tree)
    try:
        conf = config.load(path)
        waits.configure(conf)  # its bounds apply to the checks below
        state = f"{path}" if os.path.exists(path) else f"{path} missing: built-in defaults"
        backend = conf.get("firewall_backend")
        from vnmlib.firewall import BACKENDS

        if backend not in BACKENDS:
            found.append(("OpenNebulaNetwork.conf", FAIL, f"firewall_backend {backend!r} unknown"))
        else:
            found.append(("OpenNebulaNetwork.conf", OK, state))
    except VnmError as exc:
        found.append(("OpenNebulaNetwork.conf", FAIL, str(exc)))
    from vnmlib.elastic import settings

    elastic = settings.path(tree)
    if os.path.exists(elastic):
        mode = os.stat(elastic).st_mode & 0o777
        found.append(("elastic.yaml", OK if not mode & 0o007 else FAIL,
                      f"mode {mode:04o}" + ("" if not mode & 0o007 else
                                            ": readable by other users (holds credentials)")))
    return found


def nft_backend(tree):
    """With ``:firewall_backend: nft``: the binding (or nft tool) and whether the kernel
    takes the bridge-family rules (a dry-run transaction using ``ct state``)."""
    from vnmlib.model import config
    from vnmlib.errors import VnmError

    try:
        conf = config.load(config.conf_path(tree))
    except VnmError:
        return []  # configuration() reports it
    if conf.get("firewall_backend") != "nft":
        return []
    from vnmlib.firewall import backend_nft

    try:
        why = backend_nft.probe()
    except VnmError as exc:
        why = str(exc)
    found = [("nft backend", OK, backend_nft.binding())]
    if why:
        found.append(("nft backend kernel", FAIL,
                      f"a bridge-family transaction with ct state fails: {why} (needs "
                      "nf_conntrack_bridge and nft_meta_bridge)"))
    else:
        found.append(("nft backend kernel", OK, "bridge family, ct state, concatenated "
                                               "interval sets"))
    return found


def ovs_security_groups(tree):
    """Whether the VMs' security groups on Open vSwitch networks are enforced: with
    ``:ovs_security_groups:`` false (the reference's behaviour) they are ignored and
    ``update_sg`` fails, except on networks whose CONF opts in."""
    from vnmlib.model import config
    from vnmlib.errors import VnmError
    from vnmlib.ovs import ovsdb

    if not os.path.exists(ovsdb.socket_path()):
        return []  # no Open vSwitch running here
    try:
        enabled = config.is_true(config.load(config.conf_path(tree)).get("ovs_security_groups"))
    except VnmError:
        return []  # configuration() reports the broken file
    if enabled:
        return [("Open vSwitch security groups", OK, "enforced (conntrack flows)")]
    return [("Open vSwitch security groups", WARN, "not enforced: :ovs_security_groups: is "
             "false, so SECURITY_GROUPS of ovswitch/ovswitch_vxlan NICs are ignored and "
             "update_sg fails (unless a network's CONF sets ovs_security_groups=yes)")]


def ovn_join():
    """On an OVN chassis (its Open vSwitch names an ``ovn-remote``), the checks of
    ``vnm ovn check``: the join keys, br-int, ovn-controller connected."""
    from vnmlib.ovn import join

    if not join.is_chassis():
        return []
    return [(f"ovn: {check}", status, detail) for check, status, detail in join.check()]


def run_directory():
    from vnmlib.host.locks import run_dir

    path = run_dir()
    if not os.path.exists(path):
        return [("run directory", OK, f"{path}: created by the first action (root, 0755)")]
    st = os.stat(path)
    if st.st_uid != 0 and os.geteuid() == 0:
        return [("run directory", FAIL, f"{path} is owned by uid {st.st_uid}, not root: its "
                 "locks and records could be tampered with")]
    if st.st_mode & 0o022:
        return [("run directory", FAIL, f"{path} is group/world-writable "
                 f"({st.st_mode & 0o777:04o})")]
    return [("run directory", OK, f"{path} ({st.st_mode & 0o777:04o}, uid {st.st_uid})")]


def run_directory_entries():
    """Entries of the run directory the actions cannot use (each is warned and worked
    around when met: ignored or replaced)."""
    from vnmlib.host.locks import run_dir_problems

    problems = run_dir_problems()
    if not problems:
        return [("run directory entries", OK, "locks, records and start times readable")]
    return [("run directory entry", WARN, f"{path}: {problem}") for path, problem in problems]


def held_locks():
    """vnm's locks held now in this namespace, with holder and age; one held longer
    than lock_timeout is blocking other actions."""
    from vnmlib.model import waits
    from vnmlib.host.locks import describe_holder, held_locks as held

    limit = waits.seconds("lock_timeout")
    found = []
    for lock in held():
        holder = describe_holder({**lock, "since": None})
        age = "" if lock["age"] is None else f", for {lock['age']:.0f} s"
        stuck = lock["age"] is not None and lock["age"] > limit
        found.append((f"lock {lock['lock']}", WARN if stuck else OK,
                      f"held by {holder}{age}" + (f": longer than lock_timeout "
                                                  f"({waits.shown(limit)} s), other actions "
                                                  "time out" if stuck else "")))
    return found or [("locks", OK, "none held")]


def python_modules():
    found = [("python", OK, f"{sys.executable} {sys.version.split()[0]}")]
    for module, severity, needed_by in (("pyroute2", FAIL, "changing links"),
                                        ("yaml", FAIL, "the configuration"),
                                        ("click", WARN, "the vnm command"),
                                        ("iptc", WARN, ":firewall_backend: iptc"),
                                        ("boto3", WARN, "the elastic aws provider")):
        try:
            imported = __import__(module)
            version = getattr(imported, "__version__", "")
            found.append((f"python {module}", OK, version or "present"))
        except Exception as exc:  # noqa: BLE001 (a broken install is a finding, not a crash)
            found.append((f"python {module}", severity,
                          f"{type(exc).__name__}: {exc} (needed by {needed_by})"))
    return found


@click.command(name="doctor")
@click.option("--tree", type=click.Path(exists=True, file_okay=False),
              help="the vnm/ tree whose configuration to check")
@click.option("--json", "as_json", is_flag=True, help="the findings as JSON")
def command(tree, as_json):
    """Check kernel features (tried in a throwaway namespace), tools and their
    versions, the iptables backend, the configuration (and whether security groups
    on Open vSwitch are enforced, and with the nft backend its binding and kernel
    support), on an OVN chassis its join (vnm ovn check),
    vnm's global chains as the configured firewall backend reads them (in
    both families, jumped to from FORWARD, no rule accepting before that jump),
    the run directory (and
    entries in it the actions cannot use), the locks held now with their holders,
    and the Python modules. Exit 1 when a check FAILs."""
    from vnmlib.cli.run import default_tree

    configured = configuration(tree or default_tree())  # first: its tool_timeout bounds the rest
    configured += ovs_security_groups(tree or default_tree())
    configured += nft_backend(tree or default_tree())
    configured += ovn_join()
    findings = (kernel_features() + tools() + configured + global_chains(tree or default_tree())
                + run_directory()
                + run_directory_entries() + held_locks() + python_modules()
                + doctor_wire.bridges())
    rows = [{"check": c, "status": s, "detail": re.sub(r"\s+", " ", d)} for c, s, d in findings]
    emit(rows, (("status", "status"), ("check", "check"), ("detail", "detail")), as_json)
    if any(r["status"] == FAIL for r in rows):
        raise SystemExit(1)
