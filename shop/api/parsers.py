"""The API's JSON parser: DRF's, with a nesting limit.

Python's json module parses nesting recursively and raises RecursionError
(not ValueError, which DRF turns into a 400) about a thousand levels down, so
`[` × 5000 was a 500. Any body nested deeper than MAX_DEPTH is refused with a
400 whatever the interpreter's recursion limit; no endpoint takes more than
two levels.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


def nesting_depth(data: Any) -> int:
    """How deep lists and dicts nest in ``data`` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break  # deep enough to refuse: no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested more than {MAX_DEPTH} levels deep."
            ) from None
        if nesting_depth(data) > MAX_DEPTH:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.")
        return data
