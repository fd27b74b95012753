"""Hook objects built from C source for tests and demos, the way a user builds one:
clang with the flags `dfxdp hook cflags` prints."""
from __future__ import annotations

import pathlib
import subprocess

from dfxdp.build import CLANG, clang_flags, hook_include_dirs

# A hook that drops one flow: IPv4 of protocol PROTO to address DST (host order, 0: any) and,
# for TCP/UDP, port DPORT (0: any); everything else continues down the pipeline.
DROP_FLOW = r"""
#include <dfxdp/hook.h>

SEC("xdp")
int NAME(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = dfxdp_hook_enter(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__be16 *ports = (void *)(ip + 1); /* TCP/UDP source and destination port */

	if (!m)
		return XDP_ABORTED;
	if ((void *)(ports + 2) <= end && eth->h_proto == bpf_htons(ETH_P_IP) && ip->ihl == 5 &&
	    ip->protocol == PROTO && (!DST || ip->daddr == bpf_htonl(DST)) && (!DPORT || ports[1] == bpf_htons(DPORT)))
		return dfxdp_hook_verdict(ctx, m, XDP_DROP);
	return dfxdp_hook_continue(ctx, m);
}

char _license[] SEC("license") = LICENSE;
"""


def build_hook(source: str, out_dir: pathlib.Path, name: str = "hook", defines: dict[str, str] | None = None
               ) -> pathlib.Path:
    """Compile `source` (C text) into out_dir/<name>.o; clang's message on failure."""
    src, obj = out_dir / f"{name}.c", out_dir / f"{name}.o"
    src.write_text(source)
    flags = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    proc = subprocess.run([CLANG, *clang_flags(hook_include_dirs()), *flags, "-c", str(src), "-o", str(obj)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"clang failed on {name}.c:\n{proc.stderr.strip()}")
    return obj


def build_drop_flow(out_dir: pathlib.Path, name: str, proto: int, dst: int = 0, dport: int = 0,
                    license: str = "GPL", source: str = DROP_FLOW) -> pathlib.Path:
    """DROP_FLOW (or a variant of it) built as program `name`."""
    return build_hook(source, out_dir, name, {"NAME": name, "PROTO": str(proto), "DST": hex(dst),
                                              "DPORT": str(dport), "LICENSE": f'"{license}"'})
