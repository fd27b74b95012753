"""Helpers that build real test topologies: namespaces, veths, etcd, OVS, chassis."""
