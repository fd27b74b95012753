"""schemathesis against /openapi.json: generated requests, valid and schema-violating, for
every documented operation, on the ASGI app over a memory store. No 5xx, every status,
content type and body as the document says, and invalid input refused.

Bounded: a fixed number of examples per operation, derandomized (the same cases every run).
/v2.0/lbaas/… repeats /v2/lbaas/… (the same handlers), so only the latter is run."""
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService

APP = create_app(NBService(open_store("memory://")))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex="^/v2.0/lbaas/")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)
