"""OpenNebulaNetwork.conf and the per-network overrides (reference §4).

The file is YAML with Ruby symbol keys (``:keep_empty_bridge: false``). It sits
at ``<remotes>/etc/vnm/OpenNebulaNetwork.conf``, i.e. ``../etc/vnm`` seen from
the ``vnm/`` tree, wherever ``onehost sync`` copied it. When it is missing the
built-in defaults below apply (the reference's fallback). A file that exists
but cannot be parsed is an error: silently running with defaults would undo an
admin's ``keep_empty_bridge`` and delete bridges they meant to keep.

PyYAML costs ~12 ms to import, more than the whole budget of a warm action, so
the parsed result is cached with ``marshal`` in the run directory, keyed by the
file's identity (inode, size, mtime): a changed file is parsed again.
"""

import marshal
import os

from vnmlib.errors import InputError
from vnmlib.model.waits import DEFAULTS as WAIT_DEFAULTS

DEFAULTS = {
    "validate_vlan_id": False,
    "arp_cache_poisoning": True,
    "datastore_location": "/var/lib/one/datastores",
    "vlan_mtu": 1500,
    "vxlan_mode": "multicast",
    "vxlan_mc": "239.0.0.0",
    "vxlan_ttl": 16,
    "vxlan_mtu": 1500,
    "vxlan_tep": "dev",
    "ipset_maxelem": 65536,
    # vnm's own wire limits (issue 27): connections a NIC may have open (connlimit),
    # source MACs a NIC without MAC filtering may use (the wire guard's set)
    "conntrack_limit": 16384,
    "learned_mac_limit": 256,
    # vnm's own (issue 21): a NIC's protection installed by pre, before the VM
    # runs; VMs may not answer DHCP or advertise routes unless their network says so
    "protect_in_pre": True,
    "dhcp_server_guard": True,
    "ra_guard": True,
    "firewall_backend": "restore",
    "keep_empty_bridge": False,
    "ip_bridge_conf": {},
    "bridge_conf": {},
    "ip_link_conf": {},
    "ovs_bridge_conf": {},
    # vnm's own (issue 18): security groups on Open vSwitch ports, opt-in
    "ovs_security_groups": False,
    # libvirt: update_nic's QoS connection, and its run dir (live taps); vnmlib/model/qos.py
    "libvirt_uri": "qemu:///system",
    # vnm's own: the bounds of every wait (lock_timeout, tool_timeout, xtables_wait,
    # gc_record_grace), see vnmlib/model/waits.py
    **WAIT_DEFAULTS,
}

CONF_RELATIVE = os.path.join("..", "etc", "vnm", "OpenNebulaNetwork.conf")


def conf_path(tree):
    """The conf file of the remotes tree whose ``vnm/`` directory is ``tree``."""
    return os.path.normpath(os.path.join(tree, CONF_RELATIVE))


def _strip_symbols(value):
    """``{':a': {':b': 1}}`` -> ``{'a': {'b': 1}}``: Ruby symbols to plain keys."""
    if isinstance(value, dict):
        return {str(k).lstrip(":"): _strip_symbols(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_symbols(v) for v in value]
    return value


def _parse_yaml(text, source):
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of :key: value, got {type(data).__name__}")
    data = _strip_symbols(data)
    _check_plain(data, source)
    return data


_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value, source, where=""):
    """Only what YAML's plain types give (mappings, lists, scalars): no dates, no sets.

    The values are data everywhere, root's sudo helper included: the consumers
    validate each one further (numbers, names, addresses) before using it.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise InputError(f"{source}: {where or 'key'} {key!r} is not a plain name")
            _check_plain(item, source, f"{where}:{key}" if where else f":{key}:")
    elif isinstance(value, list):
        for item in value:
            _check_plain(item, source, where)
    elif not isinstance(value, _SCALARS):
        raise InputError(f"{source}: {where} holds a {type(value).__name__}, "
                         "not a string, number, boolean, list or mapping")


def _check_types(merged, source):
    """Keys vnm knows keep the type of their default (``:vlan_mtu: [1]`` is refused here)."""
    for key, default in DEFAULTS.items():
        value = merged[key]
        expected = _ACCEPTED[type(default)]
        if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
            raise InputError(f"{source}: :{key}: must be a {_TYPE_NAMES[type(default)]}, "
                             f"got {value!r}")


_ACCEPTED = {bool: (bool,), int: (int, float), str: (str,), dict: (dict,)}
_TYPE_NAMES = {bool: "boolean", int: "number", str: "string", dict: "mapping"}


def load(path, cache_dir=None):
    """The conf file merged over :data:`DEFAULTS` (a new dict each call)."""
    return _merged(read_yaml(path, cache_dir, "conf.marshal"), path)


def load_sent(text, cache_dir=None):
    """As :func:`load`, for the conf file's bytes the sudo helper's caller sent (None: no file)."""
    return _merged(parse_sent(text, "OpenNebulaNetwork.conf (sent by the caller)", cache_dir,
                              "conf-sent.marshal"), "OpenNebulaNetwork.conf")


def _merged(data, source):
    merged = dict(DEFAULTS)
    for key, value in (data or {}).items():
        # ":ip_link_conf:" with nothing under it is YAML null: keep the empty mapping.
        if value is None and isinstance(DEFAULTS.get(key), dict):
            continue
        merged[key] = value
    _check_types(merged, source)
    return merged


def read_yaml(path, cache_dir, cache_name):
    """The mapping in the YAML file ``path`` (Ruby symbols stripped), None when missing.

    Cached in ``cache_dir/cache_name`` keyed by the file's identity. Root
    opens it through root-owned links only (:mod:`vnmlib.safe_paths`).
    """
    from vnmlib.safe_paths import open_fd

    try:
        fd = open_fd(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with open(fd, "rb") as handle:
        st = os.fstat(fd)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = _cached(cache_dir, cache_name, key)
        if cached is not None:
            return cached[0]
        data = _parse_yaml(handle.read(), path)
    _store(cache_dir, cache_name, key, data)
    return data


def parse_sent(text, source, cache_dir, cache_name):
    """A YAML file's bytes received from another process, cached under those bytes
    (a few kB: comparing them is cheaper than importing hashlib)."""
    if text is None:
        return None
    key = bytes(text)
    cached = _cached(cache_dir, cache_name, key)
    if cached is not None:
        return cached[0]
    data = _parse_yaml(text, source)
    _store(cache_dir, cache_name, key, data)
    return data


def _cached(cache_dir, cache_name, key):
    """``(data,)`` from the cache when it holds ``key``, else None."""
    if not cache_dir:
        return None
    try:
        with open(os.path.join(cache_dir, cache_name), "rb") as handle:
            cached_key, cached = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return (cached,) if cached_key == key else None


def _store(cache_dir, cache_name, key, data):
    if cache_dir:
        _write_cache(os.path.join(cache_dir, cache_name), key, data)


def _write_cache(cache, key, data):
    """Atomic replace, so concurrent actions never read half a cache file.

    Mode 0600: the elastic providers' file may hold credentials.
    """
    tmp = f"{cache}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as handle:
            marshal.dump((key, data), handle)
        os.replace(tmp, cache)
    except (OSError, ValueError):  # ValueError: a value marshal cannot store
        try:
            os.unlink(tmp)
        except OSError:
            pass


# --- per-network overrides -------------------------------------------------

def _conf_value(text):
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    return text.strip()


def _pairs(text, what, lower=True):
    """``k=v,k2=,k3`` -> [(k, v), (k2, ''), (k3, None)], keys lower-cased unless not ``lower``."""
    pairs = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower() if lower else key.strip()
        if not key:
            raise InputError(f"{what}: {item!r} has no option name")
        pairs.append((key, value.strip() if sep else None))
    return pairs


def nic_conf(conf, nic):
    """The conf with the NIC's ``CONF="k=v,…"`` merged over it (reference §3)."""
    text = nic.get("CONF")
    if not text:
        return conf
    merged = dict(conf)
    for key, value in _pairs(text, f"{nic.label}: CONF"):
        merged[key] = True if value is None else _conf_value(value)
    return merged


def merge_options(defaults, text, what, lower=True):
    """Merge a ``*_CONF`` attribute over a conf-file mapping.

    ``k=v`` sets, ``k=`` (or bare ``k``) makes a flag without value (None),
    ``k=__delete__`` removes a default of the conf file. Keys are lower-cased
    (ip-link and brctl words) unless ``lower`` is false: OVS map keys
    (``other_config:Key``) are case-sensitive.
    """
    merged = {(str(k).lower() if lower else str(k)): v for k, v in (defaults or {}).items()}
    for key, value in _pairs(text, what, lower):
        if value == "__delete__":
            merged.pop(key, None)
        else:
            merged[key] = value if value else None
    return merged


def is_true(value):
    """Conf booleans arrive as YAML booleans or as CONF strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def protects_in_pre(conf):
    """``:protect_in_pre:`` (default true): ``pre`` protects a NIC before its VM runs
    (vnmlib.firewall.pre for the Linux drivers, vnmlib.ovs.pre_guard for Open vSwitch)."""
    value = conf.get("protect_in_pre", DEFAULTS["protect_in_pre"])
    if isinstance(value, bool):
        return value
    raise InputError(f"protect_in_pre {value!r} in OpenNebulaNetwork.conf is not true or false")
