"""dfxdp: a distributed network virtualization controller with an XDP fast path."""
__version__ = "0.1.0"
