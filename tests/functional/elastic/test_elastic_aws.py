"""The aws provider against moto's EC2 server on the test namespace's loopback.

Real boto3 calls over HTTP to a separate moto process (no mock inside the
action's process): assign (secondary private IP + Elastic IP association),
unassign, and a failing association rolled back.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64, vm_xml
from support.remotes import copy_tree

PORT = 5555
ENDPOINT = f"http://127.0.0.1:{PORT}"
CLIENT = f"""
import json, sys, boto3
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url="{ENDPOINT}",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
"""
SETUP = CLIENT + """
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
image = ec2.describe_images()["Images"][0]["ImageId"]
instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)
instance = instance["Instances"][0]
allocs = [ec2.allocate_address(Domain="vpc") for _ in range(2)]
print(json.dumps({"instance": instance["InstanceId"],
                  "eni": instance["NetworkInterfaces"][0]["NetworkInterfaceId"],
                  "allocs": [[a["AllocationId"], a["PublicIp"]] for a in allocs]}))
"""
STATE = CLIENT + """
eni = sys.argv[1]
ips = [p["PrivateIpAddress"] for p in ec2.describe_network_interfaces(
    NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["PrivateIpAddresses"]]
links = {a["AllocationId"]: a.get("PrivateIpAddress") for a in ec2.describe_addresses()["Addresses"]
         if a.get("NetworkInterfaceId") == eni}
print(json.dumps({"ips": ips, "associated": links}))
"""


def in_ns(ns, code, *args):
    done = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def cloud(ns, tmp_path):
    server = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m", "moto.server",
                               "-H", "127.0.0.1", "-p", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-Htln",
                                    f"src 127.0.0.1:{PORT}"], capture_output=True, text=True)
            if probe.stdout.strip():
                break
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
        world = in_ns(ns, SETUP)
        tree = copy_tree(tmp_path / "remotes")
        path = os.path.join(os.path.dirname(tree), "etc", "vnm", "elastic.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({
                "providers": {"ec2": {"driver": "aws", "region": "us-east-1",
                                      "endpoint_url": ENDPOINT, "access_key_id": "testing",
                                      "secret_access_key": "testing", "max_attempts": 2}},
                "hosts": {"node1": {"provider": "ec2", "instance_id": world["instance"]}},
                "transport": {"local": True}}))
        os.chmod(path, 0o600)
        yield ns, tree, world
    finally:
        server.kill()
        server.wait()


def nic(nic_id, ip, alloc, tag="NIC"):
    attrs = {"_tag": tag, "NIC_ID": nic_id, "BRIDGE": "br-el", "VN_MAD": "elastic", "IP": ip,
             "EXTERNAL_IP": alloc[1], "GATEWAY": "10.9.0.1", "AWS_ALLOCATION_ID": alloc[0]}
    if tag == "NIC":
        attrs["TARGET"] = f"one-10-{nic_id}"
    else:
        attrs["PARENT_ID"] = 0
    return attrs


def test_assign_associate_then_unassign(cloud):
    ns, tree, world = cloud
    stdin = b64(vm_xml(10, [nic(0, "10.9.0.10", world["allocs"][0])]))
    assert_ok(ns.run("elastic", "pre", stdin=stdin, tree=tree))
    ns.add_tap("one-10-0", "br-el")
    assert_ok(ns.run("elastic", "post", "one-10", "node1", stdin=stdin, tree=tree))
    state = in_ns(ns, STATE, world["eni"])
    assert "10.9.0.10" in state["ips"]
    # moto associates with the interface's primary address whatever
    # PrivateIpAddress says (EC2 itself honours it): check the interface only
    assert list(state["associated"]) == [world["allocs"][0][0]]
    assert "10.9.0.10 dev br-el" in ns.ip("route", "show")

    assert_ok(ns.run("elastic", "clean", "node1", stdin=stdin, tree=tree))
    state = in_ns(ns, STATE, world["eni"])
    assert "10.9.0.10" not in state["ips"] and state["associated"] == {}
    assert_ok(ns.run("elastic", "clean", "node1", stdin=stdin, tree=tree))  # idempotent


def test_failed_association_rolls_everything_back(cloud):
    ns, tree, world = cloud
    before = in_ns(ns, STATE, world["eni"])
    stdin = b64(vm_xml(10, [nic(0, "10.9.0.10", world["allocs"][0]),
                            nic(1, "10.9.0.11", ["eipalloc-0000000000000dead", "192.0.2.9"],
                                tag="NIC_ALIAS")]))
    assert_ok(ns.run("elastic", "pre", stdin=stdin, tree=tree))
    done = ns.run("elastic", "post", "one-10", "node1", stdin=stdin, tree=tree)
    assert_one_error(done, "NIC_ALIAS 1", "eipalloc-0000000000000dead")
    assert in_ns(ns, STATE, world["eni"]) == before  # NIC 0's assignment undone too
    assert "10.9.0.1" not in ns.ip("route", "show")


def test_missing_allocation_id_is_an_input_error(cloud):
    ns, tree, world = cloud
    attrs = nic(0, "10.9.0.10", world["allocs"][0])
    del attrs["AWS_ALLOCATION_ID"]
    done = ns.run("elastic", "post", "one-10", "node1", stdin=b64(vm_xml(10, [attrs])), tree=tree)
    assert_one_error(done, "NIC 0", "AWS_ALLOCATION_ID is missing")
