"""What every simulator endpoint reads a request with: a key in either spelling Google accepts
(camelCase or snake_case), and the error answer a request that cannot be served gets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error answer: HTTP code, Google status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def invalid_argument(message: str) -> ApiError:
    """The 400 INVALID_ARGUMENT Google answers to a malformed or unsupported request."""
    return ApiError(400, "INVALID_ARGUMENT", message)


_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case(key: str) -> str:
    """`inlineData` -> `inline_data`: the other spelling Google accepts for every key."""
    return _CAMEL_HUMP.sub("_", key).lower()


def pick(obj: Mapping[str, Any], camel: str) -> Any:
    """obj[camel], or obj[snake_case(camel)]: Google reads both spellings."""
    return obj[camel] if camel in obj else obj.get(snake_case(camel))
