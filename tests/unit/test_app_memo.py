"""Memo: an app reuses what it derived from an unchanged object (the load balancer's
rings), recomputed as soon as the object, or anything else it depends on, changes."""
from dfxdp.controller.apps.base import Memo


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
