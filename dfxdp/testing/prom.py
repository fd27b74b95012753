"""Reading Prometheus text in tests: one sample's value, promtool's verdict."""
from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def promtool_check(text: str) -> tuple[bool, str]:
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    return check.returncode == 0, check.stdout + check.stderr
