"""Prometheus metrics: the datapath (read from the per-CPU maps at scrape time),
the agent's control loop, and the API server."""
