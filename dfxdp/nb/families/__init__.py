"""The NB service's resource families (dfxdp/nb/service.py composes them): one module
each, with what creating, changing and deleting its kinds checks and writes."""
