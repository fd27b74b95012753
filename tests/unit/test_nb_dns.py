"""Neutron's DNS integration in the NB: dns_name, dns_domain, dns_assignment, the DHCP port."""
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService


@pytest.fixture
def svc():
    return NBService(open_store("memory://"))


@pytest.fixture
def net(svc):
    network = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": network["id"], "cidr": "10.9.0.0/24"})
    return network


def dhcp_ports(svc, network_id):
    return svc.list("port", {"network_id": [network_id], "device_owner": ["network:dhcp"]})


def test_unnamed_port_is_host_dashes_in_the_server_domain(svc, net):
    port = svc.create("port", {"network_id": net["id"]})
    address = port["fixed_ips"][0]["ip_address"]
    hostname = "host-" + address.replace(".", "-")
    assert port["dns_assignment"] == [{"hostname": hostname, "ip_address": address,
                                       "fqdn": f"{hostname}.openstacklocal."}]


def test_named_port_pqdn_and_fqdn(svc, net):
    port = svc.create("port", {"network_id": net["id"], "dns_name": "web1"})
    assert port["dns_assignment"][0]["hostname"] == "web1"
    assert port["dns_assignment"][0]["fqdn"] == "web1.openstacklocal."
    fq = svc.create("port", {"network_id": net["id"], "dns_name": "db.openstacklocal."})
    assert fq["dns_assignment"][0]["fqdn"] == "db.openstacklocal."


def test_network_domain_overrides_and_a_change_renames_every_port(svc, net):
    port = svc.create("port", {"network_id": net["id"], "dns_name": "web1"})
    svc.update("network", net["id"], {"dns_domain": "corp.example."})
    assert svc.get("port", port["id"])["dns_assignment"][0]["fqdn"] == "web1.corp.example."
    assert svc.get("port", port["id"])["revision_number"] == port["revision_number"] + 1
    [dhcp] = dhcp_ports(svc, net["id"])
    assert dhcp["dns_assignment"][0]["fqdn"].endswith(".corp.example.")


def test_server_domain_is_configurable():
    svc = NBService(open_store("memory://"), dns_domain="cloud.test.")
    network = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": network["id"], "cidr": "10.9.0.0/24"})
    port = svc.create("port", {"network_id": network["id"], "dns_name": "a"})
    assert port["dns_assignment"][0]["fqdn"] == "a.cloud.test."


def test_a_bad_server_domain_is_refused():
    with pytest.raises(NBError) as err:
        NBService(open_store("memory://"), dns_domain="no-trailing-dot")
    assert "is not a FQDN" in err.value.message


BAD_NAMES = [
    ("-web", "Name '-web' must not start or end with a hyphen"),
    ("web_1", "Name 'web_1' must be 1-63 characters long"),
    ("a" * 64, "must be 1-63 characters long"),
    ("a..b", "Encountered an empty component"),
    ("web.123", "TLD '123' must not be all numeric"),
    # over 255 characters: the model's limit on every string answers first (same 400)
    (".".join(["abcdefghi"] * 26), "at most 255 characters"),
    ("web.other.", "Its higher level labels must be equal to the dns_domain"),
    ("openstacklocal.", "It must also include one or more valid DNS labels"),
    (".".join(["abcdefghi"] * 25), "the resulting length exceeds the maximum size of '255'"),
]


@pytest.mark.parametrize("name,reason", BAD_NAMES, ids=[n[:20] for n, _ in BAD_NAMES])
def test_bad_dns_name_is_neutrons_400_and_changes_nothing(svc, net, name, reason):
    before = svc.store.range("/")
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": net["id"], "dns_name": name})
    assert (err.value.status, err.value.type) == (400, "HTTPBadRequest")
    assert err.value.message.startswith(("Invalid input for dns_name. Reason: ", "Invalid input for port: dns_name"))
    assert reason in err.value.message
    assert svc.store.range("/") == before


@pytest.mark.parametrize("domain,reason", [
    ("example.com", "'example.com' is not a FQDN"),
    ("exa_mple.com.", "not a valid PQDN or FQDN"),
    ("a." * 127, "Adding a sub-domain will cause it to exceed"),
])
def test_bad_dns_domain_is_400(svc, domain, reason):
    with pytest.raises(NBError) as err:
        svc.create("network", {"name": "x", "dns_domain": domain})
    assert err.value.status == 400 and err.value.message.startswith("Invalid input for dns_domain. Reason: ")
    assert reason in err.value.message


def test_names_are_unique_in_a_network_regardless_of_case(svc, net):
    first = svc.create("port", {"network_id": net["id"], "dns_name": "web"})
    before = svc.store.range("/")
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": net["id"], "dns_name": "WEB"})
    assert (err.value.status, err.value.type) == (409, "DuplicateRecordSet")
    assert svc.store.range("/") == before
    other = svc.create("port", {"network_id": net["id"]})
    with pytest.raises(NBError):
        svc.update("port", other["id"], {"dns_name": "Web"})
    # another network may reuse it, and renaming frees the name
    net2 = svc.create("network", {"name": "n2"})
    svc.create("subnet", {"network_id": net2["id"], "cidr": "10.8.0.0/24"})
    svc.create("port", {"network_id": net2["id"], "dns_name": "web"})
    svc.update("port", first["id"], {"dns_name": "web-old"})
    assert svc.update("port", other["id"], {"dns_name": "web"})["dns_assignment"][0]["fqdn"] == "web.openstacklocal."


def test_dns_assignment_cannot_be_set_by_a_client(svc, net):
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": net["id"], "dns_assignment": []})
    assert err.value.status == 400


def test_dhcp_port_follows_the_dhcp_subnets(svc):
    network = svc.create("network", {"name": "d"})
    assert dhcp_ports(svc, network["id"]) == []
    s1 = svc.create("subnet", {"network_id": network["id"], "cidr": "10.1.0.0/24"})
    [dhcp] = dhcp_ports(svc, network["id"])
    assert dhcp["device_id"] == "reserved_dhcp_port" and dhcp["security_groups"] == []
    assert [f["subnet_id"] for f in dhcp["fixed_ips"]] == [s1["id"]]
    s2 = svc.create("subnet", {"network_id": network["id"], "cidr": "10.2.0.0/24"})
    svc.create("subnet", {"network_id": network["id"], "cidr": "10.3.0.0/24", "enable_dhcp": False})
    [dhcp] = dhcp_ports(svc, network["id"])
    assert sorted(f["subnet_id"] for f in dhcp["fixed_ips"]) == sorted([s1["id"], s2["id"]])
    kept = next(f for f in dhcp["fixed_ips"] if f["subnet_id"] == s1["id"])
    svc.update("subnet", s2["id"], {"enable_dhcp": False})
    [dhcp] = dhcp_ports(svc, network["id"])
    assert dhcp["fixed_ips"] == [kept]
    svc.delete("subnet", s1["id"])  # the DHCP port's address does not hold the subnet
    assert dhcp_ports(svc, network["id"]) == []
    svc.update("subnet", s2["id"], {"enable_dhcp": True})
    assert len(dhcp_ports(svc, network["id"])) == 1
    svc.delete("network", network["id"])  # nor the network
    assert svc.list("port") == []


def test_a_deleted_port_frees_its_name_and_host_names_are_held_too(svc, net):
    web = svc.create("port", {"network_id": net["id"], "dns_name": "web"})
    svc.delete("port", web["id"])
    svc.create("port", {"network_id": net["id"], "dns_name": "web"})
    anon = svc.create("port", {"network_id": net["id"]})
    taken = anon["dns_assignment"][0]["hostname"]  # host-10-9-0-x
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": net["id"], "dns_name": taken.upper()})
    assert (err.value.status, err.value.type) == (409, "DuplicateRecordSet") and anon["id"] in err.value.message
    assert svc.store.range("/dfxdp/alloc/dns/")  # names are held as reservation keys, as MACs and IPs


def test_concurrent_creates_of_one_name_give_it_once():
    import threading

    store = open_store("memory://")
    svc = NBService(store)
    network = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": network["id"], "cidr": "10.9.0.0/24"})
    made, refused = [], []

    def create():
        try:
            made.append(NBService(store).create("port", {"network_id": network["id"], "dns_name": "one"}))
        except NBError as exc:
            refused.append(exc.type)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and refused == ["DuplicateRecordSet"] * 5


@pytest.mark.parametrize("cidr, first_free, asked", [("10.4.0.0/24", "10.4.0.2", ["10.4.0.9", "10.4.0.10"]),
                                                     ("2001:db8:4::/64", "2001:db8:4::2",
                                                      ["2001:db8:4::f", "2001:db8:4::10"])])
def test_dhcp_port_takes_the_lowest_free_address_so_low_ones_stay_free_for_clients(svc, cidr, first_free, asked):
    """Other ports pick at random among the first 16 free addresses; the DHCP port must not,
    or a client asking for one of them (Tempest's ip-substring test) finds it taken by chance."""
    for attempt in range(20):
        network = svc.create("network", {"name": f"low{attempt}"})
        subnet = svc.create("subnet", {"network_id": network["id"], "cidr": cidr,
                                       "ip_version": 6 if ":" in cidr else 4})
        [dhcp] = dhcp_ports(svc, network["id"])
        assert dhcp["fixed_ips"][0]["ip_address"] == first_free
        for address in asked:
            port = svc.create("port", {"network_id": network["id"],
                                       "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": address}]})
            svc.delete("port", port["id"])
