"""TProxy: OneGate (or any configured service) reachable at 169.254.16.9 from every VM of a bridge.

With ``:tproxy:`` in OpenNebulaNetwork.conf (:mod:`vnmlib.model.tproxy_conf`),
``pre`` of the Linux-bridge drivers (bridge, fw, 802.1Q, vxlan) gives each
bridge the reference's arrangement (reference §2.9):

- a veth pair, ``<BR>b`` a port of the bridge, ``<BR>a`` in the network
  namespace ``one_tproxy_<BR>`` with 169.254.16.9/32 and a default route out
  of it (replies go back to whichever VM asked);
- ``table bridge one_tproxy``, chain ``ch_<BR>``: ARP requests for
  169.254.16.9 neither leave by the bridge's uplink nor come in by it, so the
  VM's own hypervisor answers and no request reaches the others;
- vnm's proxy daemon (:mod:`vnmlib.linux.tproxy_daemon`), one per host,
  listening in each namespace and relaying to the configured remotes; the
  services of each bridge are a root-owned state file the daemon reads on
  SIGHUP (the reference kept them in nftables maps).

It is part of a bridge's own life: :func:`vnmlib.linux.bridge.attach` and
``release`` call :func:`wanted`, :func:`attach` and :func:`release`, so every
driver built on a Linux bridge gets it without wiring it in.

Every ``pre`` checks the daemon (started when dead, reloaded when alive);
``clean`` of the last guest of a bridge removes its arrangement, and the
daemon stops with the last bridge. Everything is planned as
:mod:`vnmlib.host.steps`, so ``vnm plan`` shows it instead of doing it.
"""

import os
import re
import signal
import sys

from vnmlib.errors import InputError, VnmError
from vnmlib.host import process, steps, sysfs
from vnmlib.host.locks import BridgeUsers, LinkLocks, ensure_dir, netns_key, run_dir
from vnmlib.host.steps import Step
from vnmlib.host.view import LinkView
from vnmlib.model import tproxy_conf, waits

SERVICE_ADDR = "169.254.16.9"
NETNS_PREFIX = "one_tproxy_"
TABLE = "one_tproxy"
DAEMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tproxy_daemon.py")
LOG_KEEP = 1 << 20  # bytes of proxy.log kept before it is rotated to proxy.log.1
# one character less than a link name's 15: the veth names add "a"/"b"; and what an
# unquoted nft chain name (ch_<BR>) may hold
_TPROXY_BRIDGE = re.compile(r"^[A-Za-z0-9_.-]{1,14}$")


def netns_name(bridge):
    return f"{NETNS_PREFIX}{bridge}"


def state_dir():
    """This namespace's TProxy state: ``bridges/<BR>.json``, the daemon's pid and log."""
    return os.path.join(run_dir(), "tproxy", netns_key())


def _bridge_file(bridge):
    return os.path.join(state_dir(), "bridges", f"{bridge}.json")


# -- what the NICs want --------------------------------------------------------------

class BridgeProxy:
    """What one bridge's TProxy is made of: its services and its uplinks (the ports
    through which the ARP requests for 169.254.16.9 must neither leave nor come)."""

    def __init__(self):
        self.services = {}  # service_port -> Service; NICs of other networks: the first wins
        self.uplinks = set()


def wanted(ctx, nics, need_type):
    """{bridge: BridgeProxy} for ``nics``; every value checked before anything changes.

    Called before the bridge is made, so a bad ``:tproxy:`` is one line and no change.
    """
    parsed = tproxy_conf.services(ctx.conf)
    if not parsed:
        return {}
    by_bridge = {}
    for nic in nics:
        chosen = tproxy_conf.nic_services(parsed, nic, ctx.log)
        if not chosen:
            continue
        if not _TPROXY_BRIDGE.match(nic.bridge):
            raise InputError(f"{nic.label}: BRIDGE {nic.bridge} cannot have a TProxy (:tproxy: "
                             "in OpenNebulaNetwork.conf): its veth names <BRIDGE>a/<BRIDGE>b "
                             "need a name of at most 14 letters, digits and _ . -")
        proxy = by_bridge.setdefault(nic.bridge, BridgeProxy())
        for service in chosen:
            proxy.services.setdefault(service.service_port, service)
        proxy.uplinks |= _uplinks(need_type(nic, ctx.conf))
    return by_bridge


def _uplinks(need):
    """The bridge's port to the network: the device made for it (802.1Q, vxlan), else PHYDEV.

    Exactly its ports: the ARP rule is not scoped to the bridge (that needs
    ``meta ibrname``), so a name that is another bridge's port would reach there.
    """
    return set(need.owned_devices()) or ({need.phydev} if need.phydev else set())


# -- steps ---------------------------------------------------------------------------

def _ip(*args):
    return [process.which("ip"), *args]


def _run(argv, what, stdin_text=None):
    return process.run(argv, stdin_text).check(what)


class MakeTproxyPort(Step):
    """The veth pair and the namespace holding 169.254.16.9 (reference §2.9 steps 1-6)."""

    def __init__(self, bridge, make_veth, move_peer, make_netns):
        self.bridge = bridge
        self.make_veth = make_veth
        self.move_peer = move_peer  # <BR>a still in the host's namespace (an interrupted pre)
        self.make_netns = make_netns

    def describe(self):
        return (f"tproxy port {self.bridge}b on {self.bridge}, {SERVICE_ADDR} in "
                f"{netns_name(self.bridge)}")

    def apply(self, nl):
        bridge, netns = self.bridge, netns_name(self.bridge)
        if self.make_netns:
            _run(_ip("netns", "add", netns), f"creating namespace {netns}")
            # set before <BR>a moves in, which then takes the namespace's defaults:
            # - arp_ignore may be inherited from the host; 0 answers ARP for 169.254.16.9
            #   whatever the asking VM's address is (the reference's knob);
            # - disable_ipv6: the namespace speaks IPv4 only, so <BR>a has no
            #   link-local address for VMs to reach and sends no DAD/RS into the
            #   bridge (-e: a kernel without IPv6 has no such key)
            _run([*_ip("netns", "exec", netns), process.which("sysctl"), "-qew",
                  "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.default.arp_ignore=0",
                  "net.ipv6.conf.default.disable_ipv6=1"], f"setting up {netns}")
        if self.make_veth:
            _run(_ip("link", "add", f"{bridge}b", "type", "veth", "peer", "name", f"{bridge}a"),
                 f"creating veth {bridge}b")
            steps.Ipv6Quiet(f"{bridge}b").apply(nl)  # as vnm's bridges: before it goes up
        if self.make_veth or self.move_peer:
            _run(_ip("link", "set", f"{bridge}a", "netns", netns), f"moving {bridge}a to {netns}")
        _run(_ip("link", "set", f"{bridge}b", "master", bridge, "up"),
             f"enslaving {bridge}b to {bridge}")
        batch = (f"address replace {SERVICE_ADDR}/32 dev {bridge}a\n"
                 f"link set dev {bridge}a up\n"
                 f"route replace default dev {bridge}a\n")
        _run(_ip("-n", netns, "-batch", "-"), f"configuring {bridge}a in {netns}", batch)

    def undo(self):
        if self.make_veth or self.make_netns:
            return RemoveTproxyPort(self.bridge, delete_veth=self.make_veth)
        return None


def _our_veth(view, bridge):
    """Whether ``<BR>b`` is the TProxy veth: a plain device with a peer (a veth's
    ``iflink`` is its peer's index, a lone device's its own), not a tap. A VM's
    tap may carry that name (TARGET is the user's): it is never taken, enslaved
    or deleted for a TProxy port."""
    name = f"{bridge}b"
    base = f"{sysfs.SYS_NET}/{name}"
    if view.link_kind(name) != "" or os.path.exists(f"{base}/tun_flags"):
        return False
    try:
        with open(f"{base}/ifindex", encoding="ascii") as index, \
                open(f"{base}/iflink", encoding="ascii") as peer:
            return index.read().strip() != peer.read().strip()
    except OSError:
        return False


def _peer_in_netns(bridge):
    """Whether ``<BR>b``'s peer is ``<BR>a`` of ``one_tproxy_<BR>``: proof enough to delete
    it (a container's veth named by TARGET has its peer elsewhere)."""
    import json

    done = process.run(_ip("-n", netns_name(bridge), "-j", "link", "show", "dev", f"{bridge}a"))
    if not done.ok:
        return False
    try:
        with open(f"{sysfs.SYS_NET}/{bridge}b/ifindex", encoding="ascii") as handle:
            index = int(handle.read())
    except (OSError, ValueError):
        return False
    return json.loads(done.stdout or "[{}]")[0].get("link_index") == index


def proven_ours(view, bridge):
    """``<BR>b`` is a veth whose peer is ``<BR>a``: here (an interrupted ``pre``) or in
    ``one_tproxy_<BR>``. Needed before taking or deleting an existing ``<BR>b``."""
    if not _our_veth(view, bridge):
        return False
    if not view.exists(f"{bridge}a"):
        return _peer_in_netns(bridge)
    try:
        with open(f"{sysfs.SYS_NET}/{bridge}b/ifindex", encoding="ascii") as index, \
                open(f"{sysfs.SYS_NET}/{bridge}a/iflink", encoding="ascii") as peer:
            return index.read().strip() == peer.read().strip()
    except OSError:
        return False


class RemoveTproxyPort(Step):
    def __init__(self, bridge, delete_veth):
        self.bridge = bridge
        self.delete_veth = delete_veth

    def describe(self):
        return f"delete tproxy port {self.bridge}b and namespace {netns_name(self.bridge)}"

    def apply(self, nl):
        if self.delete_veth:
            _run(_ip("link", "delete", f"{self.bridge}b"), f"deleting {self.bridge}b")
        netns = netns_name(self.bridge)
        if os.path.exists(f"/run/netns/{netns}"):
            _run(_ip("netns", "delete", netns), f"deleting namespace {netns}")


def _chain_script(bridge, uplinks):
    """``ch_<BR>``: ARP requests for 169.254.16.9 neither leave by the bridge's uplinks nor
    come in by them (None: the chain goes).

    The reference matches ``meta ibrname <BR> oifname != <BR>b``; ``meta ibrname``
    needs the kernel's nft_meta_bridge, which not every kernel has. The uplinks
    name the bridge's way out without it, and also keep other hosts' VMs from
    this host's proxy.
    """
    chain = f"ch_{bridge}"
    lines = [f"add table bridge {TABLE}",
             f"add chain bridge {TABLE} {chain} "
             "{ type filter hook forward priority filter; policy accept; }"]
    if uplinks is None:
        lines.append(f"delete chain bridge {TABLE} {chain}")
    else:
        lines.append(f"flush chain bridge {TABLE} {chain}")
        for uplink in sorted(uplinks):
            for direction in ("oifname", "iifname"):
                lines.append(f'add rule bridge {TABLE} {chain} {direction} "{uplink}" '
                             f"arp operation request arp daddr ip {SERVICE_ADDR} drop")
    return "\n".join(lines) + "\n"


class TproxyArpRule(Step):
    """ARP for 169.254.16.9 kept on ``bridge`` (``uplinks`` None: the rule goes)."""

    def __init__(self, bridge, uplinks):
        self.bridge = bridge
        self.uplinks = uplinks

    def describe(self):
        if self.uplinks is None:
            return f"delete nft chain bridge {TABLE} ch_{self.bridge}"
        through = ", ".join(sorted(self.uplinks)) or "no uplink"
        return (f"keep ARP for {SERVICE_ADDR} on {self.bridge} (nft bridge {TABLE} "
                f"ch_{self.bridge}: {through})")

    def apply(self, nl):
        _run([process.which("nft"), "-f", "-"], f"nft bridge {TABLE} ch_{self.bridge}",
             _chain_script(self.bridge, self.uplinks))

    def undo(self):
        return TproxyArpRule(self.bridge, None) if self.uplinks is not None else None


class DropTproxyTable(Step):
    """The last bridge's TProxy is gone: its (empty) nft table goes too."""

    def describe(self):
        return f"delete nft table bridge {TABLE}"

    def apply(self, nl):
        # "add" first: deleting a table that is already gone is then no error
        _run([process.which("nft"), "-f", "-"], f"nft delete table bridge {TABLE}",
             f"add table bridge {TABLE}\ndelete table bridge {TABLE}\n")


def state_text(bridge, services, uplinks):
    """A bridge's state file: what the daemon reads (netns, services), and the uplinks
    the ARP rule names, so that a warm ``pre`` recognises a TProxy already right."""
    import json

    return json.dumps({"netns": netns_name(bridge), "services": [s.as_list() for s in services],
                       "uplinks": sorted(uplinks)}, sort_keys=True)


def _state_is(bridge, text):
    try:
        with open(_bridge_file(bridge), encoding="utf-8") as handle:
            return handle.read() == text
    except OSError:
        return False


class TproxyServices(Step):
    """The bridge's services for the daemon (None: the bridge has none any more)."""

    def __init__(self, bridge, services, uplinks=()):
        self.bridge = bridge
        self.services = services
        self.uplinks = uplinks

    def describe(self):
        if self.services is None:
            return f"tproxy {self.bridge}: no services"
        shown = ", ".join(f"{SERVICE_ADDR}:{s.service_port} -> {s.remote_addr}:{s.remote_port}"
                          for s in self.services)
        return f"tproxy {self.bridge}: {shown}"

    def apply(self, nl):
        path = _bridge_file(self.bridge)
        if self.services is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        ensure_dir(os.path.dirname(path))
        text = state_text(self.bridge, self.services, self.uplinks)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)  # the daemon never reads half a file

    def undo(self):
        return TproxyServices(self.bridge, None) if self.services is not None else None


class TproxyDaemon(Step):
    """Start the daemon (dead or never started), reload it (alive) or stop it (no bridge left)."""

    def __init__(self, stop=False):
        self.stop = stop

    def describe(self):
        return "stop the tproxy daemon" if self.stop else "start or reload the tproxy daemon"

    def apply(self, nl):
        pid = daemon_pid()
        if self.stop:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
            _remove(os.path.join(state_dir(), "pid"))
        elif pid is not None:
            os.kill(pid, signal.SIGHUP)
        else:
            _start_daemon()


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def daemon_argv():
    # -I: no PYTHON* variables, no user site, no current directory on the path
    return [sys.executable, "-I", DAEMON, state_dir()]


def daemon_pid():
    """The running daemon's pid, or None; a pid reused by another program is not it."""
    try:
        with open(os.path.join(state_dir(), "pid"), encoding="ascii") as handle:
            pid = int(handle.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")[:-1]
    except (OSError, ValueError):
        return None
    args = [os.fsdecode(arg) for arg in cmdline]
    # any interpreter, any vnmlib copy (the sudo helper's or a tree's): the state dir decides
    ours = (len(args) == 4 and args[1] == "-I" and os.path.basename(args[2]) == "tproxy_daemon.py"
            and args[3] == state_dir())
    return pid if ours else None


def _start_daemon():
    import select
    import subprocess

    directory = state_dir()
    ensure_dir(directory)
    log_path = os.path.join(directory, "proxy.log")
    try:
        if os.path.getsize(log_path) > LOG_KEEP:
            os.replace(log_path, f"{log_path}.1")
    except FileNotFoundError:
        pass
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        # its own session: killing the action's process group leaves the daemon alone
        proc = subprocess.Popen(daemon_argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log_fd, cwd="/", close_fds=True, start_new_session=True)
    finally:
        os.close(log_fd)
    limit = waits.seconds("tool_timeout")
    ready, _, _ = select.select([proc.stdout], [], [], limit)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line != b"ready\n":
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise VnmError(f"the tproxy daemon did not start within {waits.shown(limit)} s "
                       f"(tool_timeout); see {log_path}")
    with open(os.path.join(directory, "pid"), "w", encoding="ascii") as handle:
        handle.write(f"{proc.pid}\n")
    proc.returncode = 0  # it runs on by design: no "still running" warning when proc goes


# -- planning ------------------------------------------------------------------------

class TproxyLocks(LinkLocks):
    """The bridges' link locks plus the namespace's one TProxy lock (daemon, state files)."""

    def __init__(self, bridges):
        super().__init__(bridges)
        self.keys = sorted(set(self.keys) | {"tproxy"})


def plan_attach(view, proxies):
    """Steps making each bridge's TProxy; none for one already right (a warm ``pre``
    reads sysfs and the state file only), and the daemon started or reloaded
    when anything changed or it is not running."""
    planned = []
    for bridge, proxy in proxies.items():
        port = f"{bridge}b"
        services = list(proxy.services.values())
        make_veth = not view.exists(port)
        make_netns = not os.path.exists(f"/run/netns/{netns_name(bridge)}")
        # warm: as the last pre left it (the state file is written only once the port is ours)
        if (not make_veth and not make_netns and view.master(port) == bridge
                and view.is_up(port) and not view.exists(f"{bridge}a")
                and _our_veth(view, bridge)
                and _state_is(bridge, state_text(bridge, services, proxy.uplinks))):
            continue
        if not make_veth and not proven_ours(view, bridge):
            raise VnmError(f"bridge {bridge}: {port} exists and is not vnm's TProxy veth "
                           f"(a veth whose peer {bridge}a is in {netns_name(bridge)})")
        move_peer = not make_veth and view.exists(f"{bridge}a")
        planned += [MakeTproxyPort(bridge, make_veth, move_peer, make_netns),
                    TproxyArpRule(bridge, proxy.uplinks),
                    TproxyServices(bridge, services, proxy.uplinks)]
    if planned or daemon_pid() is None:
        planned.append(TproxyDaemon())
    return planned


def attach(ctx, proxies, undo_bridges):
    """``pre``: each bridge of ``proxies`` (from :func:`wanted`) gets its TProxy.

    On failure its own steps are undone, then ``undo_bridges()`` releases what
    the action built before (a failed pre leaves nothing half-built).
    """
    if not proxies:
        return
    try:
        with TproxyLocks(proxies):
            steps.apply(plan_attach(LinkView(), proxies), ctx.log)
    except VnmError:
        undo_bridges()
        raise


def has_tproxy(bridge):
    return (os.path.exists(_bridge_file(bridge))
            or os.path.exists(f"/run/netns/{netns_name(bridge)}"))


def plan_release(view, bridge, needs, users_left):
    """Steps removing ``bridge``'s TProxy once no guest is left (``<BR>b`` is none)."""
    if view.is_bridge(bridge):
        non_guests = set().union(*(need.non_guests() for need in needs))
        if users_left or set(view.bridge_ports(bridge)) - non_guests:
            return []
    port = f"{bridge}b"
    return [TproxyServices(bridge, None), TproxyArpRule(bridge, None),
            RemoveTproxyPort(bridge, view.exists(port) and proven_ours(view, bridge))]


def release(ctx, nics, need_type):
    """``clean``: after the bridge's own release, its TProxy goes when no guest is left.

    Independent of the conf (it may have lost ``:tproxy:`` since ``pre``): what
    exists is removed. As the reference, also when keep_empty_bridge keeps the
    bridge. The daemon is reloaded, or stopped with the last bridge.
    """
    by_bridge = {}
    for nic in nics:
        if _TPROXY_BRIDGE.match(nic.bridge) and has_tproxy(nic.bridge):
            by_bridge.setdefault(nic.bridge, []).append(need_type(nic, ctx.conf))
    if not by_bridge:
        return
    with TproxyLocks(by_bridge):
        view, users = LinkView(), BridgeUsers()
        planned, gone = [], set()
        for bridge, bridge_needs in by_bridge.items():
            removal = plan_release(view, bridge, bridge_needs, users.users(bridge))
            gone.update([bridge] if removal else [])
            planned += removal
        if planned:
            last = not set(_configured_bridges()) - gone
            planned += [TproxyDaemon(stop=last)] + ([DropTproxyTable()] if last else [])
        steps.apply(planned, ctx.log)


def _configured_bridges():
    try:
        names = os.listdir(os.path.join(state_dir(), "bridges"))
    except FileNotFoundError:
        return []
    return [name[:-5] for name in names if name.endswith(".json")]
