"""nat: on-premise floating IPs, on the host itself (the model of Nova's FloatingIP).

The external address goes on a host interface (so the host answers ARP for it
on that network), traffic to it is DNATed to the VM's private IP, and the
VM's traffic leaving through that interface is SNATed to it. Settings:

- ``interface`` (required): the host interface facing the external network;
- ``prefixlen`` (default 32): of the external address on it;
- ``pool`` (optional): CIDRs EXTERNAL_IP must fall in; ``assign`` refuses others.
"""

import ipaddress

from vnmlib.elastic.hostops import Address, Dnat, Snat
from vnmlib.elastic.providers import Provider


class NatProvider(Provider):
    def _pool(self):
        pool = self.setting("pool", [])
        if isinstance(pool, str):
            pool = [pool]
        try:
            return [ipaddress.ip_network(str(net)) for net in pool]
        except ValueError as exc:
            raise ValueError(f"nat provider {self.name!r}: pool: {exc}") from None

    def assign(self, ip, external_ip, opts):
        pool = self._pool()
        address = ipaddress.ip_address(external_ip)
        if pool and not any(address in net for net in pool):
            raise ValueError(f"EXTERNAL_IP {external_ip} is outside the pool "
                             f"{', '.join(map(str, pool))} of provider {self.name!r}")

    def unassign(self, ip, external_ip, opts):
        return None  # nothing outside the host: remote_clean removes the host's part

    def activate(self, ip, external_ip, opts):
        device = str(self.setting("interface", required=True))
        return [Address(device, external_ip, self.setting("prefixlen", 32)),
                Dnat(external_ip, ip),
                Snat(ip, external_ip, device)]
