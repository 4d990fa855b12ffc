"""The app's process-wide set-up: uvicorn's access log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from api.main import configure_access_log


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    """uvicorn's access logger with a handler, as uvicorn configures it; restored afterwards."""
    access = logging.getLogger("uvicorn.access")
    handlers, propagate = access.handlers[:], access.propagate
    access.handlers = [logging.NullHandler()]
    try:
        yield access
    finally:
        access.handlers, access.propagate = handlers, propagate


@pytest.mark.parametrize(
    ("enabled", "logs"),
    [
        (False, False),  # the default: uvicorn's connections find no handler and skip the line
        (True, True),  # uvicorn's own configuration stands
    ],
)
def test_main_access_log_setting(access_logger: logging.Logger, enabled: bool, logs: bool) -> None:
    configure_access_log(enabled)
    assert access_logger.hasHandlers() is logs
