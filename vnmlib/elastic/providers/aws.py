"""aws: EC2 Elastic IPs on the host's instance (reference oneform-registry aws_vnm.rb).

``assign`` adds the VM's IP as a secondary private address of the instance's
primary network interface (``assign_private_ip_addresses``), then associates
the NIC's ``AWS_ALLOCATION_ID`` with it (``associate_address``); ``unassign``
does the inverse. boto3 is an optional extra (``pip install vnm[aws]``),
imported only here; throttled calls are retried by botocore's "standard"
retry mode (exponential backoff with jitter). Settings:

- ``instance_id`` (required; usually per host entry): the host's EC2 instance;
- ``region``; ``endpoint_url`` (an EC2-compatible endpoint);
- ``access_key_id`` / ``secret_access_key`` (else boto3's usual chain:
  environment, ``~/.aws``, instance profile);
- ``max_attempts`` (default 8), ``connect_timeout`` / ``read_timeout`` seconds.

No host operations: AWS delivers the address to the instance's interface.
"""

from vnmlib.elastic.providers import Provider


def _error_text(exc):
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    if error:
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(exc)


class AwsProvider(Provider):
    def __init__(self, name, settings, host):
        super().__init__(name, settings, host)
        self._ec2 = None
        self._eni = None

    @property
    def ec2(self):
        if self._ec2 is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise RuntimeError("boto3 is not installed on the front-end "
                                   "(pip install 'vnm[aws]' or apt install python3-boto3)") from None
            session = boto3.session.Session(
                aws_access_key_id=self.setting("access_key_id"),
                aws_secret_access_key=self.setting("secret_access_key"),
                region_name=self.setting("region"))
            config = Config(retries={"max_attempts": int(self.setting("max_attempts", 8)),
                                     "mode": "standard"},
                            connect_timeout=float(self.setting("connect_timeout", 10)),
                            read_timeout=float(self.setting("read_timeout", 30)))
            self._ec2 = session.client("ec2", endpoint_url=self.setting("endpoint_url"),
                                       config=config)
        return self._ec2

    def _call(self, what, method, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.ec2, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(f"{what}: {_error_text(exc)}") from None

    def _interface(self):
        """The instance's primary network interface (device index 0)."""
        if self._eni is None:
            instance_id = self.setting("instance_id", required=True)
            answer = self._call(f"describe instance {instance_id}", "describe_instances",
                                InstanceIds=[instance_id])
            for reservation in answer.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    for eni in instance.get("NetworkInterfaces", []):
                        if eni.get("Attachment", {}).get("DeviceIndex") == 0:
                            self._eni = eni["NetworkInterfaceId"]
            if self._eni is None:
                raise RuntimeError(f"instance {instance_id} has no primary network interface")
        return self._eni

    def _private_ips(self, eni):
        answer = self._call(f"describe interface {eni}", "describe_network_interfaces",
                            NetworkInterfaceIds=[eni])
        return {p["PrivateIpAddress"] for i in answer.get("NetworkInterfaces", [])
                for p in i.get("PrivateIpAddresses", [])}

    @staticmethod
    def _allocation(opts):
        alloc = opts.get("AWS_ALLOCATION_ID", "")
        if not alloc:
            raise ValueError("AWS_ALLOCATION_ID is missing")
        return alloc

    def assign(self, ip, external_ip, opts):
        alloc = self._allocation(opts)
        eni = self._interface()
        added = ip not in self._private_ips(eni)
        if added:
            self._call(f"assign {ip} to {eni}", "assign_private_ip_addresses",
                       NetworkInterfaceId=eni, PrivateIpAddresses=[ip])
        try:
            # reassociation: the VM may come from another host (migration)
            self._call(f"associate {alloc} ({external_ip}) with {ip}", "associate_address",
                       AllocationId=alloc, NetworkInterfaceId=eni, PrivateIpAddress=ip,
                       AllowReassociation=True)
        except RuntimeError:
            if added:
                self._call(f"unassign {ip} from {eni}", "unassign_private_ip_addresses",
                           NetworkInterfaceId=eni, PrivateIpAddresses=[ip])
            raise

    def unassign(self, ip, external_ip, opts):
        alloc = self._allocation(opts)
        eni = self._interface()
        answer = self._call(f"describe address {alloc}", "describe_addresses",
                            AllocationIds=[alloc])
        for address in answer.get("Addresses", []):
            # the allocation is this NIC's: associated with this host's interface,
            # it is ours to release; with another one (the VM moved on), it is not
            if address.get("AssociationId") and address.get("NetworkInterfaceId") == eni:
                self._call(f"disassociate {alloc}", "disassociate_address",
                           AssociationId=address["AssociationId"])
        if ip in self._private_ips(eni):
            self._call(f"unassign {ip} from {eni}", "unassign_private_ip_addresses",
                       NetworkInterfaceId=eni, PrivateIpAddresses=[ip])
