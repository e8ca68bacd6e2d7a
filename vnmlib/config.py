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

from .errors import InputError

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
    "firewall_backend": "restore",
    "keep_empty_bridge": False,
    "ip_bridge_conf": {},
    "bridge_conf": {},
    "ip_link_conf": {},
    "ovs_bridge_conf": {},
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


def _parse_yaml(path):
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of :key: value, got {type(data).__name__}")
    return _strip_symbols(data)


def load(path, cache_dir=None):
    """The conf file merged over :data:`DEFAULTS` (a new dict each call)."""
    data = read_yaml(path, cache_dir, "conf.marshal")
    merged = dict(DEFAULTS)
    for key, value in (data or {}).items():
        # ":ip_link_conf:" with nothing under it is YAML null: keep the empty mapping.
        if value is None and isinstance(DEFAULTS.get(key), dict):
            continue
        merged[key] = value
    return merged


def read_yaml(path, cache_dir, cache_name):
    """The mapping in the YAML file ``path`` (Ruby symbols stripped), None when missing.

    Cached in ``cache_dir/cache_name`` keyed by the file's identity.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    cache = os.path.join(cache_dir, cache_name) if cache_dir else None
    if cache:
        try:
            with open(cache, "rb") as handle:
                cached_key, cached = marshal.load(handle)
            if cached_key == key:
                return cached
        except (OSError, EOFError, ValueError, TypeError):
            pass
    data = _parse_yaml(path)
    if cache:
        _write_cache(cache, key, data)
    return data


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
