"""dummy: always succeeds and asks nothing of the host (reference dummy_vnm.rb)."""

from vnmlib.elastic.providers import Provider


class DummyProvider(Provider):
    def assign(self, ip, external_ip, opts):
        return None

    def unassign(self, ip, external_ip, opts):
        return None
