"""A host on a VLAN of the external network, for kernels without 802.1Q devices (this one:
no CONFIG_VLAN_8021Q, so no `ip link add … type vlan`): scapy sends the tagged frames a VLAN
sub-interface would and reads the tags of the answers (AF_PACKET gives them back as auxdata).

    python -m dfxdp.testing.vlan IFACE VID SRC_IP DST_IP    (inside the host's namespace)

ARPs for DST_IP, then pings it, both 802.1Q-tagged with VID; exits 0 when both answers came
back tagged with VID (the ping's from DST_IP), 1 otherwise, saying what was missing.
"""
from __future__ import annotations

import sys

TIMEOUT = 2.0


def ping_tagged(iface: str, vid: int, src: str, dst: str) -> str | None:
    """None when `dst` answered ARP and ping over VLAN `vid`, else what went wrong."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.sendrecv import srp1
    from scapy.arch import get_if_hwaddr

    mac = get_if_hwaddr(iface)
    who_has = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=vid) / ARP(op=1, hwsrc=mac, psrc=src, pdst=dst)
    answer = srp1(who_has, iface=iface, timeout=TIMEOUT, verbose=0)
    if answer is None or Dot1Q not in answer or answer[Dot1Q].vlan != vid or ARP not in answer:
        return f"no ARP answer for {dst} on VLAN {vid}: {answer!r}"
    echo = Ether(src=mac, dst=answer[ARP].hwsrc) / Dot1Q(vlan=vid) / IP(src=src, dst=dst) / ICMP(id=vid, seq=1) / b"vlan"
    reply = srp1(echo, iface=iface, timeout=TIMEOUT, verbose=0)
    if reply is None or Dot1Q not in reply or reply[Dot1Q].vlan != vid or ICMP not in reply \
            or reply[ICMP].type != 0 or reply[IP].src != dst:
        return f"no echo reply from {dst} on VLAN {vid}: {reply!r}"
    return None


if __name__ == "__main__":
    problem = ping_tagged(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
    print(problem or "ok")
    sys.exit(1 if problem else 0)
