"""Read-only OVSDB client: ``select`` over JSON-RPC on ovsdb-server's socket (RFC 7047).

Why not ovs-vsctl for reads too: every action starts by reading the switch,
and a warm ``pre`` must finish in a few times the interpreter's start-up.
Spawning ovs-vsctl costs ~8 ms plus ~8 ms to import subprocess; a select on
the socket costs ~1 ms with the standard library. Writes stay with ovs-vsctl
(:mod:`vnmlib.ovs.tools`): its transactions, ``--may-exist`` checks and wait for
ovs-vswitchd are the reference's semantics and not worth re-implementing.

The socket is the one ovs-vsctl uses: ``$OVS_RUNDIR/db.sock``, by default
``/var/run/openvswitch/db.sock``.
"""

import _socket
import json
import os

from vnmlib.errors import VnmError

DATABASE = "Open_vSwitch"
DEFAULT_RUNDIR = "/var/run/openvswitch"


def socket_path():
    return os.path.join(os.environ.get("OVS_RUNDIR") or DEFAULT_RUNDIR, "db.sock")


def decode(value):
    """OVSDB JSON -> Python: maps to dicts, uuids to strings, sets to lists."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == "map":
            return {decode(k): decode(v) for k, v in body}
        if kind == "uuid":
            return body
        if kind == "set":
            return [decode(v) for v in body]
    return value


class Connection:
    """One connection to ovsdb-server; each :meth:`call` is one request and its reply."""

    def __init__(self, timeout):
        self.path = socket_path()
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise VnmError(f"cannot reach the Open vSwitch database at {self.path} "
                           f"({exc.strerror or exc}); is ovsdb-server running?") from None
        self.buffer = ""
        self.decoder = json.JSONDecoder()
        self.next_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _send(self, message):
        self.sock.sendall(json.dumps(message).encode())

    def _receive(self):
        while True:
            text = self.buffer.lstrip()
            if text:
                try:
                    message, end = self.decoder.raw_decode(text)
                    self.buffer = text[end:]
                    return message
                except ValueError:
                    pass  # not complete yet
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise VnmError(f"reading the Open vSwitch database at {self.path}: "
                               f"{exc.strerror or 'timed out'}") from None
            if not chunk:
                raise VnmError(f"the Open vSwitch database at {self.path} closed the connection")
            self.buffer += chunk.decode()

    def call(self, method, *params):
        self.next_id += 1
        request_id = self.next_id
        self._send({"method": method, "params": list(params), "id": request_id})
        while True:
            message = self._receive()
            if message.get("method") == "echo":  # the server's keep-alive: answer it
                self._send({"result": message.get("params", []), "error": None,
                            "id": message.get("id")})
                continue
            if message.get("id") != request_id:
                continue
            if message.get("error") is not None:
                raise VnmError(f"Open vSwitch database: {message['error']}")
            return message["result"]

    def select(self, queries):
        """{table: [columns]} -> {table: [row dicts]} in one read-only transaction."""
        ops = [{"op": "select", "table": table, "where": [], "columns": list(columns)}
               for table, columns in queries.items()]
        results = self.call("transact", DATABASE, *ops)
        answer = {}
        for table, result in zip(queries, results):
            if "error" in result:
                raise VnmError(f"Open vSwitch database: {table}: {result['error']}: "
                               f"{result.get('details', '')}")
            answer[table] = [{k: decode(v) for k, v in row.items()} for row in result["rows"]]
        return answer

    def columns(self, table):
        """{column: type} of ``table`` from the database schema."""
        schema = self.call("get_schema", DATABASE)
        return {name: column["type"] for name, column in schema["tables"][table]["columns"].items()}


# -- comparing a configured ``column[:key]=value`` with what a row holds ------------

def _atom_type(spec):
    return spec if isinstance(spec, str) else spec["type"]


def _atom(kind, text):
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError("not true or false")
        return text == "true"
    if kind == "integer":
        return int(text, 10)
    if kind == "real":
        return float(text)
    return text


def holds(column_type, current, key, text):
    """Whether a column of ``column_type`` holding ``current`` equals the ovs-vsctl value ``text``.

    ``key`` selects one entry of a map column (``other_config:mac-table-size``).
    Raises ValueError when ``text`` cannot be a value of that column.
    """
    if isinstance(column_type, str):
        column_type = {"key": column_type}
    if current is None:  # a column of a bridge that does not exist yet: check the value only
        current = {} if "value" in column_type else []
    key_kind = _atom_type(column_type["key"])
    if "value" in column_type:  # a map
        if key is None:
            raise ValueError("a map column needs a key (column:key=value)")
        return (current or {}).get(key) == _atom(_atom_type(column_type["value"]), text)
    if key is not None:
        raise ValueError("not a map column")
    maximum = column_type.get("max", 1)
    if maximum == 1:
        wanted = None if text == "[]" else _atom(key_kind, text)
        have = current[0] if isinstance(current, list) and current else current
        return (None if have == [] else have) == wanted
    wanted = set() if text == "[]" else {_atom(key_kind, t) for t in text.split(",")}
    return set(current if isinstance(current, list) else [current]) == wanted
