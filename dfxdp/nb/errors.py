"""NB errors: each carries Neutron's error type and the HTTP status to answer with."""
from __future__ import annotations


class NBError(Exception):
    status = 500

    def __init__(self, type_: str, message: str, detail: str = ""):
        super().__init__(message)
        self.type = type_
        self.message = message
        self.detail = detail

    def to_neutron(self) -> dict:
        return {"NeutronError": {"type": self.type, "message": self.message, "detail": self.detail}}


class BadRequest(NBError):
    status = 400


class Unauthorized(NBError):
    status = 401


class NotFound(NBError):
    status = 404


class Conflict(NBError):
    status = 409


# neutron-lib's wording where it is not "<Label> <id> could not be found."
NOT_FOUND_MESSAGES = {"SubnetPool": "Subnet pool {} could not be found.",
                      "AddressScope": "Address scope {} could not be found.",
                      "SecurityGroup": "Security group {} does not exist",
                      "SecurityGroupRule": "Security group rule {} does not exist",
                      "FloatingIP": "Floating IP {} could not be found"}


def not_found(kind: str, obj_id: str) -> NotFound:
    label = "".join(part.capitalize() for part in kind.split("_"))
    label = {"Floatingip": "FloatingIP", "Subnetpool": "SubnetPool", "Healthmonitor": "HealthMonitor",
             "Loadbalancer": "LoadBalancer"}.get(label, label)
    message = NOT_FOUND_MESSAGES.get(label, f"{label} {{}} could not be found.")
    return NotFound(f"{label}NotFound", message.format(obj_id))
