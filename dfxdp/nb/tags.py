"""Neutron's standard-attr-tag: tags on every standard resource, and the list filters on them.

Tags are a standard attribute (`tags`, a list of strings shown on the object), given in a
create body or changed through the tag sub-resource (`/v2.0/<collection>/<id>/tags[/<tag>]`,
dfxdp/api/tags.py), never in an update body; a change of tags bumps the object's revision, as
in Neutron. Validation is neutron's tagging extension's: a tag is a string of at most
MAX_TAG_LEN characters, a list of tags has no duplicates, an object has at most MAX_TAGS_COUNT.
The list filters (`tags`, `tags-any`, `not-tags`, `not-tags-any`) take comma-separated tags;
repeating a parameter adds tags.
"""
from __future__ import annotations

from typing import Any, Callable

from .errors import BadRequest, NotFound

MAX_TAG_LEN = 255
MAX_TAGS_COUNT = 50
FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


def invalid(message: str) -> BadRequest:
    return BadRequest("InvalidInput", f"Invalid input for operation: {message}.")


def check_tag(tag: Any) -> str:
    """neutron-lib's validate_string(tag, MAX_TAG_LEN)."""
    if not isinstance(tag, str):
        raise invalid(f"'{tag}' is not a valid string")
    if len(tag) > MAX_TAG_LEN:
        raise invalid(f"'{tag}' exceeds maximum length of {MAX_TAG_LEN}")
    return tag


def check_tags_body(body: Any) -> list[str]:
    """The body of `PUT …/tags` (replace every tag) or `POST …/tags` (add them): {"tags": [unique strings]}."""
    if not isinstance(body, dict) or "tags" not in body:
        raise invalid("Invalid tags body")
    return check_tags(body["tags"])


def check_tags(tags: Any) -> list[str]:
    """neutron-lib's validate_list_of_unique_strings(tags, MAX_TAG_LEN)."""
    if not isinstance(tags, list):
        raise invalid(f"'{tags}' is not a list")
    for tag in tags:
        check_tag(tag)
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise invalid(f"Duplicate items in the list: '{', '.join(duplicates)}'")
    return tags


def check_count(collection: str, tags: list[str]) -> list[str]:
    """Neutron's per-object limit (validate_tags_limit); `collection` names the resource as its error does."""
    if len(set(tags)) > MAX_TAGS_COUNT:
        raise BadRequest("BadRequest", f"Bad {collection} request: The number of tags exceed the per-resource "
                                       f"limit of {MAX_TAGS_COUNT}.")
    return tags


def not_found(tag: str) -> NotFound:
    return NotFound("TagNotFound", f"Tag {tag} could not be found.")


def _split(values: list[str]) -> set[str]:
    return {t for value in values for t in value.split(",") if t}


PREDICATES: dict[str, Callable[[set[str], set[str]], bool]] = {
    "tags": lambda has, asked: asked <= has,
    "tags-any": lambda has, asked: bool(asked & has),
    "not-tags": lambda has, asked: not asked <= has,
    "not-tags-any": lambda has, asked: not asked & has,
}


def matches(doc: dict, name: str, values: list[str]) -> bool:
    """Whether a document passes the tag filter `name` with the query's values."""
    asked = _split(values)
    return not asked or PREDICATES[name](set(doc.get("tags") or []), asked)
