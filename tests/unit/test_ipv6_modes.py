"""Neutron's IPv6 subnet attributes (ipv6_ra_mode, ipv6_address_mode): every validation rule
with Neutron's error, and the automatic (EUI-64) addresses of slaac and dhcpv6-stateless
subnets: on create, on a new subnet, on a MAC change, gone with their subnet."""
import ipaddress

import pytest
from oslo_utils import netutils  # Neutron's own EUI-64 function: the reference

from dfxdp.nb import ipam
from dfxdp.nb.db import open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService
from dfxdp.testing.nb_integrity import problems

MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
AUTO = ("slaac", "dhcpv6-stateless")
CIDR = "2001:db8:5::/64"


@pytest.fixture
def svc():
    return NBService(open_store("memory://"))


@pytest.fixture
def net(svc):
    return svc.create("network", {"name": "v6"})


def subnet(svc, net, cidr=CIDR, **attrs):
    return svc.create("subnet", {"network_id": net["id"], "cidr": cidr, "ip_version": ipaddress.ip_network(cidr).version,
                                 **attrs})


def refused(call, status, type_, words):
    with pytest.raises(NBError) as err:
        call()
    assert (err.value.status, err.value.type) == (status, type_), err.value.message
    assert words in err.value.message, err.value.message


def ips(port):
    return {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}


@pytest.mark.parametrize("mac", ["fa:16:3e:12:34:56", "00:00:00:00:00:01", "02:ff:ff:ff:ff:ff", "fe:ed:fa:ce:be:ef"])
@pytest.mark.parametrize("cidr", ["2001:db8::/64", "fd00:1:2:3::/64"])
def test_eui64_is_neutrons(cidr, mac):
    assert ipam.eui64(cidr, mac) == str(netutils.get_ipv6_addr_by_EUI64(cidr, mac))


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("mode", MODES)
def test_the_modes_are_stored_and_shown(svc, net, mode):
    made = subnet(svc, net, ipv6_ra_mode=mode, ipv6_address_mode=mode)
    assert (made["ipv6_ra_mode"], made["ipv6_address_mode"]) == (mode, mode)
    assert [s["id"] for s in svc.list("subnet", {"ipv6_address_mode": [mode]})] == [made["id"]]


def test_left_out_they_are_null(svc, net):
    made = subnet(svc, net)
    assert made["ipv6_ra_mode"] is None and made["ipv6_address_mode"] is None


@pytest.mark.parametrize("attr", ["ipv6_ra_mode", "ipv6_address_mode"])
def test_an_unknown_mode_is_refused(svc, net, attr):
    refused(lambda: subnet(svc, net, **{attr: "dhcpv7"}), 400, "HTTPBadRequest", attr)


@pytest.mark.parametrize("ra,address", [(a, b) for a in MODES for b in MODES if a != b])
def test_both_set_and_different_is_refused(svc, net, ra, address):
    refused(lambda: subnet(svc, net, ipv6_ra_mode=ra, ipv6_address_mode=address), 400, "InvalidInput",
            f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{address}' is not valid")
    assert svc.list("subnet") == []


@pytest.mark.parametrize("attr", ["ipv6_ra_mode", "ipv6_address_mode"])
def test_an_ipv4_subnet_has_no_mode(svc, net, attr):
    refused(lambda: subnet(svc, net, "10.1.0.0/24", **{attr: "slaac"}), 400, "InvalidInput",
            f"{attr} is not valid when ip_version is 4")


@pytest.mark.parametrize("attr", ["ipv6_ra_mode", "ipv6_address_mode"])
def test_a_mode_needs_dhcp_enabled(svc, net, attr):
    refused(lambda: subnet(svc, net, enable_dhcp=False, **{attr: "dhcpv6-stateful"}), 400, "InvalidInput",
            "cannot be set when enable_dhcp is set to False")


@pytest.mark.parametrize("attrs", [{"ipv6_ra_mode": "slaac"}, {"ipv6_address_mode": "slaac"},
                                   {"ipv6_ra_mode": "dhcpv6-stateless", "ipv6_address_mode": "dhcpv6-stateless"}])
def test_automatic_addresses_need_a_64(svc, net, attrs):
    refused(lambda: subnet(svc, net, "2001:db8:5::/80", **attrs), 400, "InvalidInput",
            "Invalid CIDR 2001:db8:5::/80 for IPv6 address mode. OpenStack uses the EUI-64 address format")


def test_a_stateful_subnet_may_be_any_size(svc, net):
    made = subnet(svc, net, "2001:db8:5::/120", ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")
    assert made["cidr"] == "2001:db8:5::/120"


@pytest.mark.parametrize("attr", ["ipv6_ra_mode", "ipv6_address_mode"])
def test_the_modes_cannot_be_updated(svc, net, attr):
    made = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    refused(lambda: svc.update("subnet", made["id"], {attr: "dhcpv6-stateless"}), 400, "HTTPBadRequest", attr)
    assert svc.update("subnet", made["id"], {attr: "slaac", "name": "same"})["name"] == "same"


def test_dhcp_cannot_be_disabled_under_a_mode(svc, net):
    made = subnet(svc, net, ipv6_address_mode="dhcpv6-stateful")
    refused(lambda: svc.update("subnet", made["id"], {"enable_dhcp": False}), 400, "InvalidInput",
            "Cannot disable enable_dhcp with ipv6 attributes set")
    plain = subnet(svc, net, "2001:db8:6::/64")
    assert svc.update("subnet", plain["id"], {"enable_dhcp": False})["enable_dhcp"] is False


# ------------------------------------------------------------------ automatic addresses

@pytest.mark.parametrize("attrs", [{"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"},
                                   {"ipv6_address_mode": "dhcpv6-stateless"}, {"ipv6_ra_mode": "slaac"}])
def test_a_port_gets_its_eui64_address(svc, net, attrs):
    made = subnet(svc, net, **attrs)
    port = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:aa:bb:cc"})
    assert ips(port) == {made["id"]: "2001:db8:5:0:f816:3eff:feaa:bbcc"}
    assert problems(svc.store) == []


@pytest.mark.parametrize("attrs", [{}, {"ipv6_address_mode": "dhcpv6-stateful"}, {"ipv6_ra_mode": "dhcpv6-stateful"}])
def test_other_subnets_give_a_pool_address(svc, net, attrs):
    made = subnet(svc, net, **attrs)
    port = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:aa:bb:cc"})
    address = ips(port)[made["id"]]
    assert address != ipam.eui64(CIDR, "fa:16:3e:aa:bb:cc") and ipaddress.ip_address(address) in ipaddress.ip_network(CIDR)


def test_every_auto_address_subnet_is_included(svc, net):
    """Neutron: a port has an address on every auto-address subnet, beside one IPv4 and one
    stateful IPv6 address, whatever the order the subnets came in and whatever it asked for."""
    v4 = subnet(svc, net, "10.2.0.0/24")
    stateful = subnet(svc, net, "2001:db8:7::/64", ipv6_address_mode="dhcpv6-stateful")
    slaac = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    stateless = subnet(svc, net, "2001:db8:8::/64", ipv6_address_mode="dhcpv6-stateless")
    mac = "fa:16:3e:00:00:07"
    port = svc.create("port", {"network_id": net["id"], "mac_address": mac})
    assert ips(port).keys() == {v4["id"], stateful["id"], slaac["id"], stateless["id"]}
    assert ips(port)[slaac["id"]] == ipam.eui64(CIDR, mac)
    assert ips(port)[stateless["id"]] == ipam.eui64("2001:db8:8::/64", mac)
    only_v4 = svc.create("port", {"network_id": net["id"], "fixed_ips": [{"subnet_id": v4["id"]}]})
    assert ips(only_v4).keys() == {v4["id"], slaac["id"], stateless["id"]}
    nothing_asked = svc.create("port", {"network_id": net["id"], "fixed_ips": []})
    assert ips(nothing_asked).keys() == {slaac["id"], stateless["id"]}
    assert problems(svc.store) == []


def test_an_explicit_address_on_an_auto_address_subnet_is_refused(svc, net):
    made = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    refused(lambda: svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:aa:bb:cc",
                                        "fixed_ips": [{"subnet_id": made["id"], "ip_address": "2001:db8:5::10"}]}),
            400, "AllocationOnAutoAddressSubnet",
            "IPv6 address 2001:db8:5::10 cannot be directly assigned to a port on subnet")
    # its own EUI-64 address, asked for, is what it would get anyway
    port = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:aa:bb:cc",
                               "fixed_ips": [{"ip_address": ipam.eui64(CIDR, "fa:16:3e:aa:bb:cc")}]})
    assert ips(port) == {made["id"]: ipam.eui64(CIDR, "fa:16:3e:aa:bb:cc")}
    refused(lambda: svc.update("port", port["id"], {"fixed_ips": [{"subnet_id": made["id"],
                                                                   "ip_address": "2001:db8:5::11"}]}),
            400, "AllocationOnAutoAddressSubnet", "configured for automatic addresses")
    assert problems(svc.store) == []


def test_a_router_interface_takes_the_gateway(svc, net):
    made = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    router = svc.create("router", {"name": "r"})
    info = svc.add_router_interface(router["id"], {"subnet_id": made["id"]})
    assert ips(svc.get("port", info["port_id"])) == {made["id"]: "2001:db8:5::1"}
    # and an interface gets no automatic address on another auto-address subnet
    other = subnet(svc, net, "2001:db8:9::/64", ipv6_address_mode="dhcpv6-stateless")
    assert ips(svc.get("port", info["port_id"])) == {made["id"]: "2001:db8:5::1"}
    refused(lambda: svc.delete("subnet", made["id"]), 409, "SubnetInUse", made["id"])
    assert svc.get("subnet", other["id"])


def test_a_router_interface_port_may_hold_any_address(svc, net):
    made = subnet(svc, net, ipv6_address_mode="slaac")
    port = svc.create("port", {"network_id": net["id"], "device_owner": "network:router_interface",
                               "fixed_ips": [{"subnet_id": made["id"], "ip_address": "2001:db8:5::99"}]})
    assert ips(port) == {made["id"]: "2001:db8:5::99"}


def test_a_new_auto_address_subnet_addresses_the_ports_already_there(svc, net):
    v4 = subnet(svc, net, "10.3.0.0/24")
    port = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:01:02:03"})
    router = svc.create("router", {"name": "r"})
    interface = svc.get("port", svc.add_router_interface(router["id"], {"subnet_id": v4["id"]})["port_id"])
    made = subnet(svc, net, ipv6_ra_mode="dhcpv6-stateless", ipv6_address_mode="dhcpv6-stateless")
    after = svc.get("port", port["id"])
    assert ips(after) == {v4["id"]: ips(port)[v4["id"]], made["id"]: ipam.eui64(CIDR, "fa:16:3e:01:02:03")}
    assert after["revision_number"] == port["revision_number"] + 1
    assert ips(svc.get("port", interface["id"])) == ips(interface)  # a router interface: none
    dhcp = [p for p in svc.list("port") if p["device_owner"] == "network:dhcp"]
    assert [ips(p)[made["id"]] for p in dhcp] == [ipam.eui64(CIDR, dhcp[0]["mac_address"])]
    assert problems(svc.store) == []


def test_a_mac_update_moves_the_eui64_address(svc, net):
    v4 = subnet(svc, net, "10.4.0.0/24")
    made = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    port = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:01:02:03"})
    moved = svc.update("port", port["id"], {"mac_address": "fa:16:3e:0a:0b:0c"})
    assert ips(moved) == {v4["id"]: ips(port)[v4["id"]], made["id"]: ipam.eui64(CIDR, "fa:16:3e:0a:0b:0c")}
    # the old address is free again: a port with the old MAC gets it
    again = svc.create("port", {"network_id": net["id"], "mac_address": "fa:16:3e:01:02:03"})
    assert ips(again)[made["id"]] == ipam.eui64(CIDR, "fa:16:3e:01:02:03")
    assert problems(svc.store) == []


def test_fixed_ips_updated_without_it_keep_the_automatic_address(svc, net):
    v4 = subnet(svc, net, "10.5.0.0/24")
    made = subnet(svc, net, ipv6_address_mode="slaac")
    port = svc.create("port", {"network_id": net["id"]})
    updated = svc.update("port", port["id"], {"fixed_ips": [{"subnet_id": v4["id"], "ip_address": "10.5.0.77"}]})
    assert ips(updated) == {v4["id"]: "10.5.0.77", made["id"]: ips(port)[made["id"]]}
    assert problems(svc.store) == []


def test_an_auto_address_subnet_is_deleted_with_its_ports_addresses(svc, net):
    v4 = subnet(svc, net, "10.6.0.0/24")
    made = subnet(svc, net, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    port = svc.create("port", {"network_id": net["id"]})
    svc.delete("subnet", made["id"])
    after = svc.get("port", port["id"])
    assert ips(after) == {v4["id"]: ips(port)[v4["id"]]}
    assert all(made["id"] not in ips(p) for p in svc.list("port"))
    refused(lambda: svc.delete("network", net["id"]), 409, "NetworkInUse", "ports still in use")
    assert problems(svc.store) == []


def test_a_last_auto_address_subnet_goes_with_the_dhcp_port(svc, net):
    made = subnet(svc, net, ipv6_address_mode="dhcpv6-stateless")
    svc.create("port", {"network_id": net["id"]})
    svc.delete("subnet", made["id"])
    assert [p["fixed_ips"] for p in svc.list("port")] == [[]]  # the user's port stays, without address
    assert problems(svc.store) == []


def test_a_stateful_subnet_with_ports_stays(svc, net):
    made = subnet(svc, net, ipv6_address_mode="dhcpv6-stateful")
    svc.create("port", {"network_id": net["id"]})
    refused(lambda: svc.delete("subnet", made["id"]), 409, "SubnetInUse", made["id"])


def test_a_networks_ipv6_subnets_share_one_router_port_as_neutron(svc, net):
    """Neutron puts every IPv6 subnet of a network on the router's one port there (one
    link-local address, one RA naming each prefix); an IPv4 subnet gets a port of its own."""
    router = svc.create("router", {"name": "r"})
    first = subnet(svc, net, "2001:db8:6::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    second = subnet(svc, net, "2001:db8:7::/64", ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")
    v4 = subnet(svc, net, "10.6.0.0/24")
    one = svc.add_router_interface(router["id"], {"subnet_id": first["id"]})
    two = svc.add_router_interface(router["id"], {"subnet_id": second["id"]})
    assert two["port_id"] == one["port_id"] and two["subnet_id"] == second["id"]
    assert ips(svc.get("port", one["port_id"])) == {first["id"]: "2001:db8:6::1", second["id"]: "2001:db8:7::1"}
    assert svc.add_router_interface(router["id"], {"subnet_id": v4["id"]})["port_id"] != one["port_id"]
    refused(lambda: svc.add_router_interface(router["id"], {"subnet_id": second["id"]}), 400, "BadRequest",
            "already has a port")
    removed = svc.remove_router_interface(router["id"], {"subnet_id": first["id"]})
    assert (removed["port_id"], removed["subnet_ids"]) == (one["port_id"], [first["id"]])
    assert ips(svc.get("port", one["port_id"])) == {second["id"]: "2001:db8:7::1"}  # the port stays
    svc.delete("subnet", first["id"])  # its gateway address was given back
    svc.remove_router_interface(router["id"], {"subnet_id": second["id"]})
    with pytest.raises(NBError):
        svc.get("port", one["port_id"])
    assert problems(svc.store) == []
