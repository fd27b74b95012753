"""Apps reuse what they derived from an unchanged object: the same Entry objects
(so the reconciler does not encode them again), recomputed as soon as the
object, or anything else it depends on, changes."""
from dfxdp.controller.apps.base import LocalView, Memo
from dfxdp.controller.apps.l2 import L2App


def test_memo_compares_documents_by_identity_and_the_rest_by_value():
    memo, calls = Memo(), []
    doc = {"id": "p"}

    def compute():
        calls.append(1)
        return len(calls)

    memo.new_pass()
    assert memo.get("p", (doc, 5), compute) == 1
    memo.new_pass()
    assert memo.get("p", (doc, 5), compute) == 1           # same document, same value
    memo.new_pass()
    assert memo.get("p", (dict(doc), 5), compute) == 2     # an equal but new document: recomputed
    memo.new_pass()
    assert memo.get("p", (doc, 6), compute) == 3
    memo.new_pass()
    memo.new_pass()                                        # a pass that did not ask: forgotten
    assert memo.get("p", (doc, 6), compute) == 4


NET = {"id": "n", "key": 5}


def view(ports, local=None):
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n": NET},
                     ports={p["id"]: p for p in ports}, local_ports=local or {},
                     chassis_by_name={"ch2": {"name": "ch2", "tunnel_ip": "198.18.0.12"}})


def port(pid, mac, host="ch2"):
    return {"id": pid, "key": 1, "network_id": "n", "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.9"}]}


def test_l2_hands_out_the_same_entries_until_a_port_changes():
    app = L2App()
    a, b = port("a", "fa:16:3e:00:00:01"), port("b", "fa:16:3e:00:00:02")
    first = list(app.desired(view([a, b])))
    again = list(app.desired(view([a, b])))
    assert all(x is y for x, y in zip(first, again)) and len(first) == len(again) == 4
    moved = list(app.desired(view([a, port("b", "fa:16:3e:00:00:03")])))
    assert moved[:2] == first[:2] and moved[0] is first[0] and moved[2] is not first[2]
    bound_here = list(app.desired(view([a, b], local={"a": 7})))  # same document, now local: recomputed
    fdb = [e for e in bound_here if e.map == "fdb" and e.key["mac"] == [0xFA, 0x16, 0x3E, 0, 0, 1]]
    assert fdb[0].value["ifindex"] == 7
