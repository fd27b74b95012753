"""Event-scoped passes (controller/desired.py): after one port's event a pass derives only
the scopes that event touched and reads a bounded number of NB objects, whatever the number
of ports (counted, never timed), and ends with exactly what a full pass derives."""
import random

import pytest

from dfxdp.controller.apps import APPS
from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.cache import SelectiveCache
from dfxdp.controller.cache_records import DefaultNames, OneFixedIp
from dfxdp.controller.desired import LOCAL_PORT, Change, DesiredState
from dfxdp.controller.kind_index import indexes_of
from dfxdp.datapath.libbpf import lib  # noqa: F401  (the apps' structs: cffi's lib must load)

CHASSIS, REMOTES = "ch1", ("ch2", "ch3", "ch4")


class Counted(dict):
    """An NB kind's objects that count every object an app reads."""

    reads = 0

    def _count(self, n=1):
        Counted.reads += n

    def get(self, key, default=None):
        self._count()
        return super().get(key, default)

    def __getitem__(self, key):
        self._count()
        return super().__getitem__(key)

    def values(self):
        self._count(len(self))
        return super().values()

    def items(self):
        self._count(len(self))
        return super().items()

    def __iter__(self):
        self._count(len(self))
        return super().__iter__()


def encode(entry):
    """Entries as bytes without a datapath: the reconciler's encode stand-in."""
    return repr(entry.key).encode(), repr(entry.value).encode()


def world(n_ports):
    """A router over two networks, a default-like group on every port (ingress from the group,
    egress anywhere), a local port with a floating IP, the rest on three other chassis."""
    nets = {f"net{i}": {"id": f"net{i}", "key": 100 + i, "mtu": 1450} for i in range(2)}
    nets["ext"] = {"id": "ext", "key": 99, "mtu": 1500, "router:external": True}
    subnets = {f"sub{i}": {"id": f"sub{i}", "network_id": f"net{i}", "cidr": f"10.{i}.0.0/16", "ip_version": 4,
                           "gateway_ip": f"10.{i}.0.1"} for i in range(2)}
    subnets["subext"] = {"id": "subext", "network_id": "ext", "cidr": "203.0.113.0/24", "ip_version": 4,
                         "gateway_ip": "203.0.113.1"}
    ports = {}

    def port(pid, net, ip, host="", owner="", device="", groups=("sg",), dns=True):
        ports[pid] = {"id": pid, "key": len(ports) + 1, "network_id": net, "binding:host_id": host,
                      "mac_address": "fa:16:3e:%02x:%02x:%02x" % (len(ports) >> 16, len(ports) >> 8 & 255,
                                                                  len(ports) & 255),
                      "fixed_ips": [{"subnet_id": "sub" + net[-1] if net != "ext" else "subext", "ip_address": ip}],
                      "device_owner": owner, "device_id": device, "security_groups": list(groups),
                      "port_security_enabled": bool(groups),
                      "dns_assignment": [{"hostname": f"host-{pid}", "ip_address": ip,
                                          "fqdn": f"host-{pid}.openstacklocal."}] if dns else []}

    for i in range(2):
        port(f"rif{i}", f"net{i}", f"10.{i}.0.1", owner="network:router_interface", device="r1", groups=())
        port(f"dhcp{i}", f"net{i}", f"10.{i}.0.2", owner="network:dhcp", device=f"dhcp-net{i}", groups=())
    port("gw", "ext", "203.0.113.5", owner="network:router_gateway", device="r1", groups=())
    port("fipport", "ext", "203.0.113.9", owner="network:floatingip", device="fip1", groups=())
    port("vm", "net0", "10.0.1.1", host=CHASSIS)
    for n in range(n_ports):
        port(f"p{n:06d}", f"net{n % 2}", f"10.{n % 2}.{2 + n // 250 % 250}.{1 + n % 250}", host=REMOTES[n % 3])
    rules = {"in": {"id": "in", "security_group_id": "sg", "direction": "ingress", "ethertype": "IPv4",
                    "remote_group_id": "sg"},
             "out": {"id": "out", "security_group_id": "sg", "direction": "egress", "ethertype": "IPv4"}}
    return {"network": nets, "subnet": subnets, "port": ports,
            "router": {"r1": {"id": "r1", "key": 7, "routes": []}},
            "floatingip": {"fip1": {"id": "fip1", "port_id": "vm", "router_id": "r1", "floating_network_id": "ext",
                                    "floating_ip_address": "203.0.113.9", "fixed_ip_address": "10.0.1.1"}},
            "security_group": {"sg": {"id": "sg"}}, "security_group_rule": rules,
            "chassis": {c: {"name": c, "tunnel_ip": f"198.18.0.{10 + i}"} for i, c in enumerate((CHASSIS, *REMOTES))}}


def view_of(objs, local_ports, counted=False):
    wrap = Counted if counted else dict
    return LocalView(
        chassis=CHASSIS, tunnel_ip="198.18.0.10", networks=wrap(objs["network"]), subnets=wrap(objs["subnet"]),
        ports=wrap(objs["port"]), routers=wrap(objs["router"]), floatingips=wrap(objs["floatingip"]),
        security_groups=wrap(objs["security_group"]), security_group_rules=wrap(objs["security_group_rule"]),
        chassis_by_name=wrap(objs["chassis"]), local_ports=dict(local_ports), underlay_ifindex=2,
        underlay_mac="02:00:00:00:00:02", underlay_mtu=1500,
        underlay_neighbors={f"198.18.0.{10 + i}": "02:00:00:00:01:01" for i in range(1, 4)},
        bridges={"provider": (3, "02:00:00:00:00:03")}, indexes=indexes_of(objs))


def full(objs, local_ports):
    state = DesiredState([cls() for cls in APPS], encode)
    return state.rebuild(view_of(objs, local_ports))


def clean(wanted):
    return {name: entries for name, entries in wanted.items() if entries}


def one_port_event(n_ports, event):
    """(scopes derived, NB objects read) by a pass after one port event: a port moved to another
    chassis, a new port in the group every rule takes as remote (its /24 block compiled again),
    or a port bound here whose tap appeared (a new VM: its policy's rules and ports, no member)."""
    objs, local = world(n_ports), {"vm": 10}
    state = DesiredState([cls() for cls in APPS], encode)
    state.rebuild(view_of(objs, local))
    if event == "move":
        pid, old = "p000004", objs["port"]["p000004"]
        objs["port"][pid] = dict(old, **{"binding:host_id": "ch4"})
    elif event == "new member":
        pid, old = "new", None
        objs["port"][pid] = dict(objs["port"]["p000004"], id=pid, key=10 ** 6, mac_address="fa:16:3f:00:00:01",
                                 fixed_ips=[{"subnet_id": "sub0", "ip_address": "10.0.253.1"}])
    else:
        pid, old = "p000004", objs["port"]["p000004"]
        objs["port"][pid] = dict(old, **{"binding:host_id": CHASSIS})
    changes = [Change("port", pid, old, objs["port"][pid])]
    if event == "new VM here":
        local = {**local, pid: 11}
        changes.append(Change(LOCAL_PORT, pid, None, 11))
    view = view_of(objs, local, counted=True)
    Counted.reads = 0
    state.update(view, changes)
    derived, reads = state.scopes_derived, Counted.reads
    # the pass ends where a full one does
    assert clean(state.wanted) == clean(full(objs, local))
    return derived, reads


@pytest.mark.parametrize("event", ["move", "new member", "new VM here"])
def test_a_pass_after_one_port_event_reads_a_bounded_number_of_objects(event):
    small, large = one_port_event(300, event), one_port_event(3000, event)
    assert small == large, f"{small} at 300 ports, {large} at 3,000"
    scopes, reads = large
    assert scopes <= 12 and reads <= 60, f"{scopes} scopes derived, {reads} objects read"


def test_a_full_pass_reads_every_port():
    objs = world(300)
    view = view_of(objs, {"vm": 10}, counted=True)
    Counted.reads = 0
    DesiredState([cls() for cls in APPS], encode).rebuild(view)
    assert Counted.reads > 300  # the counter sees what apps read: a bound above that means something


def mutate(objs, local, rng):
    """One random event a chassis sees: (changes, new local ports)."""
    ports = objs["port"]
    what = rng.choice(["move", "readdress", "delete", "create", "bind", "unbind", "network", "subnet", "chassis",
                       "rule", "fip"])
    pid = rng.choice(sorted(p for p in ports if p.startswith("p")))
    old = ports.get(pid)
    if what == "move":
        ports[pid] = dict(old, **{"binding:host_id": rng.choice((*REMOTES, ""))})
    elif what == "readdress":
        ports[pid] = dict(old, fixed_ips=[dict(old["fixed_ips"][0], ip_address=f"10.{old['network_id'][-1]}.251."
                                               f"{rng.randrange(1, 250)}")])
    elif what == "delete":
        del ports[pid]
    elif what == "create":
        pid, old = f"q{rng.randrange(10 ** 6):06d}", None
        ports[pid] = {"id": pid, "key": 10 ** 6 + len(ports), "network_id": "net1", "binding:host_id": "ch2",
                      "mac_address": "fa:16:3f:%02x:%02x:%02x" % (rng.randrange(256), rng.randrange(256),
                                                                  rng.randrange(256)),
                      "fixed_ips": [{"subnet_id": "sub1", "ip_address": f"10.1.252.{rng.randrange(1, 250)}"}],
                      "security_groups": ["sg"], "port_security_enabled": True, "dns_assignment": []}
    elif what in ("bind", "unbind"):
        new_local = dict(local)
        if what == "bind" or not local:
            ports[pid] = dict(old, **{"binding:host_id": CHASSIS})
            new_local[pid] = 100 + len(new_local)
        else:
            new_local.pop(rng.choice(sorted(local)), None)
        changes = [Change("port", pid, old, ports[pid])] if ports[pid] is not old else []
        changes += [Change(LOCAL_PORT, p, local.get(p), new_local.get(p)) for p in local.keys() | new_local.keys()
                    if local.get(p) != new_local.get(p)]
        return changes, new_local
    elif what == "network":
        net = objs["network"]["net1"]
        objs["network"]["net1"] = dict(net, mtu=net["mtu"] - 1)
        return [Change("network", "net1", net, objs["network"]["net1"])], local
    elif what == "subnet":
        sub = objs["subnet"]["sub0"]
        objs["subnet"]["sub0"] = dict(sub, gateway_ip="10.0.0.3" if sub["gateway_ip"] == "10.0.0.1" else "10.0.0.1")
        return [Change("subnet", "sub0", sub, objs["subnet"]["sub0"])], local
    elif what == "chassis":
        ch = objs["chassis"]["ch3"]
        objs["chassis"]["ch3"] = dict(ch, tunnel_ip="198.18.0.12" if ch["tunnel_ip"] == "198.18.0.13" else "198.18.0.13")
        return [Change("chassis", "ch3", ch, objs["chassis"]["ch3"])], local
    elif what == "rule":
        rules = objs["security_group_rule"]
        old_rule = rules.pop("tcp", None)
        if old_rule is None:
            rules["tcp"] = {"id": "tcp", "security_group_id": "sg", "direction": "ingress", "ethertype": "IPv4",
                            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}
        return [Change("security_group_rule", "tcp", old_rule, rules.get("tcp"))], local
    else:
        fip = objs["floatingip"]["fip1"]
        objs["floatingip"]["fip1"] = dict(fip, port_id=None if fip["port_id"] else "vm")
        return [Change("floatingip", "fip1", fip, objs["floatingip"]["fip1"])], local
    return [Change("port", pid, old, ports.get(pid))], local


@pytest.mark.parametrize("seed", range(4))
def test_event_scoped_passes_end_where_a_full_pass_does(seed):
    rng = random.Random(seed)
    objs, local = world(200), {"vm": 10}
    state = DesiredState([cls() for cls in APPS], encode)
    state.rebuild(view_of(objs, local))
    for _ in range(40):
        changes, local = mutate(objs, local, rng)
        state.update(view_of(objs, local), changes)
        assert clean(state.wanted) == clean(full(objs, local)), changes


def test_a_key_two_scopes_want_passes_to_the_other_when_its_holder_lets_go():
    objs, local = world(2), {"vm": 10}
    # two ports with one MAC on one network: one fdb key, two scopes
    objs["port"]["p000001"]["mac_address"] = objs["port"]["p000000"]["mac_address"]
    objs["port"]["p000001"]["network_id"] = objs["port"]["p000000"]["network_id"]
    state = DesiredState([cls() for cls in APPS], encode)
    before = dict(state.rebuild(view_of(objs, local))["fdb"])
    old = objs["port"].pop("p000000")
    state.update(view_of(objs, local), [Change("port", "p000000", old, None)])
    assert len(state.wanted["fdb"]) == len(before)  # the other port holds the key now
    assert clean(state.wanted) == clean(full(objs, local))


def test_the_cache_reports_each_changed_object_once_with_its_document_before():
    from dfxdp.nb.db.base import KV, Event
    import json

    cache = SelectiveCache(CHASSIS)
    objs = world(4)
    cache.load([KV(f"/dfxdp/nb/{kind}/{i}", json.dumps(doc).encode(), 1, 1)
                for kind, docs in objs.items() for i, doc in docs.items()], 1)
    assert cache.take_changes() is None  # after a load: a full pass
    before = cache.objects["port"]["p000001"]
    for rev, host in ((2, "ch3"), (3, "ch4")):
        doc = dict(objs["port"]["p000001"], **{"binding:host_id": host, "created_at": "2026-01-01"})
        cache.apply(Event("put", "/dfxdp/nb/port/p000001", json.dumps(doc).encode(), rev))
    changes = cache.take_changes()
    assert [(c.kind, c.obj_id) for c in changes] == [("port", "p000001")]
    assert changes[0].old is before and changes[0].new["binding:host_id"] == "ch4"
    assert "created_at" not in changes[0].new  # lean: what no app reads is not kept
    assert "p000001" in cache.indexes["port"].ids("host", "ch4")
    assert "p000001" not in cache.indexes["port"].ids("host", "ch3")
    assert cache.take_changes() == []


def test_a_remote_group_loses_and_gains_a_member_in_its_event_pass():
    objs, local = world(50), {"vm": 10}
    state = DesiredState([cls() for cls in APPS], encode)
    state.rebuild(view_of(objs, local))
    old = objs["port"].pop("p000007")
    for change in (Change("port", "p000007", old, None), Change("port", "p000007", None, old)):
        objs["port"].pop("p000007", None)
        if change.new:
            objs["port"]["p000007"] = old
        before = dict(state.wanted["sg_remote"])
        state.update(view_of(objs, local), [change])
        assert state.wanted["sg_remote"] != before  # the member's block changed …
        assert clean(state.wanted) == clean(full(objs, local))  # … in this pass


def test_apps_derive_from_the_caches_compact_documents_what_they_derive_from_the_json():
    from dfxdp.nb.db.base import KV
    import json

    objs, local = world(40), {"vm": 10}
    for pid in ("p000002", "p000003"):  # the hostname NB makes of the address (most ports have no dns_name)
        ip = objs["port"][pid]["fixed_ips"][0]["ip_address"]
        name = "host-" + ip.replace(".", "-")
        objs["port"][pid]["dns_assignment"] = [{"hostname": name, "ip_address": ip, "fqdn": name + ".openstacklocal."}]
    cache = SelectiveCache(CHASSIS)
    cache.load([KV(f"/dfxdp/nb/{kind}/{i}", json.dumps(doc).encode(), 1, 1)
                for kind, docs in objs.items() for i, doc in docs.items()], 1)
    port = cache.objects["port"]["p000001"]
    assert type(port["fixed_ips"]) is OneFixedIp and port["dns_assignment"][0]["fqdn"] == "host-p000001.openstacklocal."
    assert port["fixed_ips"] == objs["port"]["p000001"]["fixed_ips"] and len(port["fixed_ips"]) == 1
    assert port["fixed_ips"][0] == objs["port"]["p000001"]["fixed_ips"][0]  # a record reads as its dict
    assert cache.objects["port"]["p000002"]["dns_assignment"][0] == objs["port"]["p000002"]["dns_assignment"][0]
    # one address under NB's own hostname: no record kept, one made as it is read, equal to the JSON
    default = cache.objects["port"]["p000002"]["dns_assignment"]
    assert type(default) is DefaultNames and default == objs["port"]["p000002"]["dns_assignment"]
    assert list(default) == objs["port"]["p000002"]["dns_assignment"] and len(default) == 1
    cached = {kind: cache.objects[kind] for kind in objs}
    assert clean(full(cached, local)) == clean(full(objs, local))


def test_a_scope_records_its_keys_in_order_and_finds_the_values_it_gave():
    objs, local = world(30), {"vm": 10}
    state = DesiredState([cls() for cls in APPS], encode)
    state.rebuild(view_of(objs, local))
    view = view_of(objs, local)
    scopes_of = [set(app.scopes(view)) for app in state.apps]
    for scope, record in state._records.items():
        for index, scopes in enumerate(scopes_of):
            derived = state._derive(view, index, scope) if scope in scopes else []
            assert state._split(index, record)[0] == [(derived[i], derived[i + 1]) for i in range(0, len(derived), 3)]
            assert all(state._value_of((index, scope), derived[i], derived[i + 1]) == derived[i + 2]
                       for i in range(0, len(derived), 3))
