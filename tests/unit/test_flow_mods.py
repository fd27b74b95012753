"""Every kind of flow action the apps use becomes an OpenFlow message os-ken can serialize
(what the switch would refuse is the e2e tests' business; what os-ken cannot encode would
stop the agent's pass before anything is sent)."""
import pytest

from dfxdp.controller.ovs.flows import (Flow, conntrack, dec_ttl, goto, output, output_reg, resubmit, set_field,
                                        to_controller, write_metadata)
from dfxdp.controller.ovs.ofctl import flow_mod, ofp, parser


class Datapath:
    ofproto, ofproto_parser, id = ofp, parser, 1


@pytest.mark.parametrize("flow", [
    Flow.of(0, 100, {"in_port": 1}, [write_metadata(5), goto(10)]),
    Flow.of(20, 60, {"metadata": 5, "eth_type": 0x0800}, [output(1), set_field("reg6", 2), set_field("reg7", 99),
                                                          resubmit(25), output_reg("reg6")]),
    Flow.of(25, 100, {"reg7": 99, "eth_type": 0x0800, "ip_proto": 17, "udp_dst": (5000, 0xFFFC),
                      "ipv4_src": ("10.0.0.0", "255.255.255.0")}, [output_reg("reg6")]),
    Flow.of(25, 100, {"reg7": 99, "eth_type": 0x0800, "ip_proto": 1, "icmpv4_type": 3, "icmpv4_code": 4},
            [output_reg("reg6")]),
    Flow.of(30, 100, {"metadata": 5, "eth_type": 0x0800}, [set_field("eth_src", "fa:16:3e:00:00:01"), dec_ttl(),
                                                           conntrack(7, 31, commit=True, snat_to="198.19.0.10")]),
    Flow.of(32, 100, {"eth_type": 0x0800, "ipv4_dst": "198.19.0.10"}, [conntrack(7, 33)]),
    Flow.of(33, 100, {"ct_zone": 7, "ct_state": (0x22, 0x32), "eth_type": 0x0800}, [to_controller()]),
])
def test_serializes(flow):
    msg = flow_mod(Datapath(), 0x3 << 48 | 1, flow)
    msg.xid = 1
    msg.serialize()
    assert len(msg.buf) > 56


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        flow_mod(Datapath(), 1, Flow.of(0, 1, {}, [("teleport", 1)]))
