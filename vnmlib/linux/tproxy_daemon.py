"""vnm's TProxy daemon: VMs' connections to 169.254.16.9:<service_port> relayed to a fixed remote.

Run by :mod:`vnmlib.linux.tproxy` as ``python3 -I tproxy_daemon.py STATE_DIR``
(standard library only: it imports nothing of vnmlib, so it needs no path).
``STATE_DIR/bridges/<BR>.json`` (root's, written by the actions) holds, per
bridge, its namespace and ``[[service_port, remote_addr, remote_port], …]``.

One process per host (per network namespace of the actions): a socket keeps
the network namespace it was made in, so the daemon enters each
``one_tproxy_<BR>`` only for the moment of making that bridge's listening
sockets, and connects to the remotes from the host's own namespace. SIGHUP
reloads the state (listeners of new bridges or ports made, of gone ones
closed, remotes changed for new connections); SIGTERM stops it.

The destination of every relayed connection is the remote configured for the
listener that accepted it: nothing a VM sends chooses where the daemon
connects, so it cannot be used to reach any other host or port.
"""

import asyncio
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import time

SERVICE_ADDR = "169.254.16.9"
CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10  # seconds: a remote that does not answer frees the VM's connection
CHUNK = 65536
ERROR_EVERY = 10  # seconds between two logged failures of one service (a VM may retry in a loop)
# connections one bridge's service relays at once: the VMs of one bridge cannot use up the
# daemon's descriptors and starve the other bridges
MAX_PER_LISTENER = 1024

_libc = ctypes.CDLL(None, use_errno=True)


def log(message):
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listening_socket(netns_path, port):
    """A TCP socket listening on 169.254.16.9:``port`` inside the namespace at ``netns_path``.

    setns changes the calling thread only: the loop's resolver threads keep the
    host's namespace, and the loop runs nothing else until the switch back.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((SERVICE_ADDR, port))
                sock.listen(socket.SOMAXCONN)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
    return sock


def read_state(state_dir):
    """{(bridge, service_port): (netns_path, remote_addr, remote_port)} from the state files."""
    wanted = {}
    directory = os.path.join(state_dir, "bridges")
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return wanted
    for name in names:
        if not name.endswith(".json"):
            continue
        bridge = name[:-5]
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                state = json.load(handle)
            netns = f"/run/netns/{state['netns']}"
            for port, addr, remote_port in state["services"]:
                if not (isinstance(port, int) and isinstance(remote_port, int)
                        and isinstance(addr, str)):
                    raise ValueError(f"bad service {port!r} {addr!r} {remote_port!r}")
                wanted[(bridge, port)] = (netns, addr, remote_port)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log(f"{bridge}: unreadable state {name}: {exc}")
    return wanted


class Listener:
    """One bridge's service port: accepts VMs' connections, relays each to the remote."""

    def __init__(self, label, sock, remote):
        self.label = label
        self.sock = sock
        self.remote = remote  # (addr, port); replaced on reload, read per connection
        self.server = None
        self.last_error = 0.0
        self.active = 0

    async def start(self):
        self.server = await asyncio.start_server(self.relay, sock=self.sock)

    def close(self):
        self.server.close()

    def log_error(self, message):
        now = time.monotonic()
        if now - self.last_error >= ERROR_EVERY:
            self.last_error = now
            log(f"{self.label}: {message}")

    async def relay(self, client_reader, client_writer):
        if self.active >= MAX_PER_LISTENER:
            self.log_error(f"{MAX_PER_LISTENER} connections open: refusing more")
            client_writer.close()
            return
        self.active += 1
        try:
            await self._relay(client_reader, client_writer)
        finally:
            self.active -= 1

    async def _relay(self, client_reader, client_writer):
        addr, port = self.remote
        try:
            remote_reader, remote_writer = await asyncio.wait_for(
                asyncio.open_connection(addr, port, family=socket.AF_INET), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            self.log_error(f"cannot connect to {addr}:{port}: {exc or 'timed out'}")
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, remote_writer),
                             pump(remote_reader, client_writer))
        for writer in (client_writer, remote_writer):
            writer.close()


async def pump(reader, writer):
    """Copy one direction until EOF, then pass the EOF on (a half-closed HTTP request
    still gets its answer)."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


class Daemon:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.listeners = {}  # (bridge, port) -> Listener
        self.stopped = asyncio.Event()

    async def reload(self):
        wanted = read_state(self.state_dir)
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).close()
            log(f"{key[0]}: closed {SERVICE_ADDR}:{key[1]}")
        for key, (netns, addr, port) in wanted.items():
            listener = self.listeners.get(key)
            if listener is not None:
                listener.remote = (addr, port)
                continue
            label = f"{key[0]} {SERVICE_ADDR}:{key[1]}"
            try:
                sock = listening_socket(netns, key[1])
            except OSError as exc:
                log(f"{label}: cannot listen: {exc}")
                continue
            listener = Listener(label, sock, (addr, port))
            await listener.start()
            self.listeners[key] = listener
            log(f"{label}: relaying to {addr}:{port}")

    async def run(self, ready):
        loop = asyncio.get_running_loop()
        reloads = asyncio.Queue()
        loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, None)
        loop.add_signal_handler(signal.SIGTERM, self.stopped.set)
        await self.reload()
        ready()
        waiter = asyncio.ensure_future(self.stopped.wait())
        while not self.stopped.is_set():
            getter = asyncio.ensure_future(reloads.get())
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await self.reload()
            else:
                getter.cancel()
        log("stopped")


def main(state_dir):
    # two descriptors per relayed connection: allow as many as the hard limit lets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def ready():
        # the spawner waits for this line: listeners are up, SIGHUP is handled
        os.write(1, b"ready\n")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    log(f"started, pid {os.getpid()}")
    asyncio.run(Daemon(state_dir).run(ready))


if __name__ == "__main__":
    main(sys.argv[1])
