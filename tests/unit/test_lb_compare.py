"""The load-balancer comparison's pure parts: reading wrk's report, kube-proxy's rule shape."""
import pytest

from dfxdp.bench import lb_compare

WRK = """Running 1s test @ http://10.1.0.100:80/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   640.12us  300.00us   5.00ms   90.00%
    Req/Sec    24.74k     1.00k   26.00k    80.00%
  24736 requests in 1.00s, 3.54MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  24736.50
Transfer/sec:      3.54MB
"""


def test_wrk_report_gives_rate_requests_and_failures():
    assert lb_compare.parse_wrk(WRK) == (24736.5, 24736, 7)
    clean = "\n".join(line for line in WRK.splitlines() if "errors" not in line and "Non-2xx" not in line)
    assert lb_compare.parse_wrk(clean) == (24736.5, 24736, 0)


def test_wrk_without_a_result_is_an_error():
    with pytest.raises(RuntimeError, match="wrk printed no result"):
        lb_compare.parse_wrk("unable to connect to 10.1.0.100:80 Connection refused\n")


def test_kube_proxy_rules_pick_each_member_with_one_over_the_remaining():
    rules = lb_compare._kube_proxy_rules().splitlines()
    picks = [line for line in rules if line.startswith("-A SVC-TCP")]
    assert picks == ["-A SVC-TCP -m statistic --mode random --probability 0.33333 -j SEP-TCP-0",
                     "-A SVC-TCP -m statistic --mode random --probability 0.50000 -j SEP-TCP-1",
                     "-A SVC-TCP -j SEP-TCP-2"]
    assert [line for line in rules if "DNAT" in line and "udp" in line] == [
        f"-A SEP-UDP-{i} -p udp -j DNAT --to-destination {a}:{lb_compare.UDP_PORT}"
        for i, a in enumerate(lb_compare.MEMBERS)]
