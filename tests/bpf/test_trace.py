"""`dfxdp trace` over a pinned pipeline: a forwarded, a routed, a spoofed and a
security-group-denied packet explained correctly, as text and JSON."""
import json
import subprocess
import sys

import pytest

from dfxdp.trace import parse_packet, trace
from tests.bpf import l2_fixtures as fx
from tests.bpf.test_l3 import RIF_B, VM_B, routed  # noqa: F401 - fixture
from tests.bpf.test_sg import MAC_A, MAC_B, sg  # noqa: F401 - fixture


@pytest.fixture
def world(pipeline, test_iface):
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(local, local2, underlay))
    return pipeline, local, local2


def test_forwarded(world):
    pipe, local, local2 = world
    frame = parse_packet(f'Ether(src="{fx.LOCAL_MAC}", dst="{fx.LOCAL2_MAC}")/IP(src="10.0.0.1", dst="10.0.0.2")/TCP()')
    t = trace(pipe.dir, local, frame)
    assert t.run.verdict == "XDP_REDIRECT" and t.run.meta["out_ifindex"] == local2
    assert "redirected to" in t.story() and "L2: ARP responder and forwarding" in t.story()


def test_forwarded_to_another_chassis(world):
    pipe, local, _ = world
    frame = parse_packet(f'Ether(src="{fx.LOCAL_MAC}", dst="{fx.REMOTE_MAC}")/IP(src="10.0.0.1", dst="10.0.0.3")/UDP()')
    assert f"VXLAN (VNI {fx.NET_A['key']}) to chassis {fx.TUNNEL_REMOTE}" in trace(pipe.dir, local, frame).story()


def test_routed(routed):  # noqa: F811
    pipe, vm_b, vm_g, _ = routed
    frame = parse_packet(f'Ether(src="{VM_B}", dst="{RIF_B}")/IP(src="10.0.0.5", dst="10.1.0.5")/TCP(dport=80)')
    t = trace(pipe.dir, vm_b, frame).as_dict()
    assert t["verdict"] == "XDP_REDIRECT" and t["out_ifindex"] == vm_g
    assert "STAGE_L3" in t["stages"] and "10.1.0.5" in t["output"]["summary"]


def test_spoofed(world):
    pipe, local, _ = world
    frame = parse_packet(f'Ether(src="{fx.LOCAL_MAC}", dst="{fx.LOCAL2_MAC}")/IP(src="10.9.9.9", dst="10.0.0.2")')
    t = trace(pipe.dir, local, frame)
    assert (t.run.verdict, t.run.drop_reason) == ("XDP_DROP", "DROP_PORTSEC_IP")
    assert "verdict: XDP_DROP (DROP_PORTSEC_IP)" in t.story() and "where: dropped" in t.story()


def test_security_group_denied_as_json_from_the_cli(sg):  # noqa: F811
    pipe, ifs = sg
    packet = f'Ether(src="{MAC_A}", dst="{MAC_B}")/IP(src="10.0.0.1", dst="10.0.0.2")/TCP(dport=99, flags="S")'
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "trace", "a", packet, "--bpffs", str(pipe.dir),
                           "--ifindex", str(ifs[0]), "-f", "json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["verdict"], out["reason"]) == ("XDP_DROP", "DROP_SG_INGRESS")
    assert out["stages"][-1] == "STAGE_SG_INGRESS" and set(out["output"]) == {"hex", "summary"}


@pytest.mark.parametrize("bad", ["Ether()/__import__('os')", "IP(", "1+1", "zz"])
def test_bad_packets_are_refused(bad):
    with pytest.raises(ValueError):
        parse_packet(bad)


def test_hex_and_pcap_inputs(tmp_path):
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", type=0x88B5))
    assert parse_packet(frame.hex()) == frame
    wrpcap(str(tmp_path / "x.pcap"), [Ether(frame)])
    assert parse_packet(str(tmp_path / "x.pcap")) == frame
