"""422 errors in the HTTPValidationError shape that the OpenAPI schema documents."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError


def invalid(location: tuple[str, ...], message: str, value: object) -> RequestValidationError:
    """A 422 for one bad input, in the documented HTTPValidationError shape."""
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )
