"""`dfxdp bench`: measure the datapath (and, as they land, the end-to-end and control-plane parts)."""
