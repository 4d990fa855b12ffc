"""Who is calling: bearer tokens of end users, or the chat backend's token plus X-User-Id."""

from __future__ import annotations

import hmac
import json
import re
from functools import lru_cache
from pathlib import Path

from fastapi import HTTPException, status

from core.settings import Settings

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@lru_cache(maxsize=8)
def _tokens_from_file(path: Path, mtime_ns: int) -> dict[str, str]:
    tokens = json.loads(path.read_text())
    if not isinstance(tokens, dict):
        raise ValueError(f"{path}: expected a JSON object of token -> user id")
    return {str(k): str(v) for k, v in tokens.items()}


def user_tokens(settings: Settings) -> dict[str, str]:
    """Every end-user token with its user, from settings and the tokens file."""
    tokens = dict(settings.api_tokens)
    path = settings.api_tokens_file
    if path is not None and path.is_file():
        tokens.update(_tokens_from_file(path, path.stat().st_mtime_ns))
    return tokens


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=_CHALLENGE)


def authenticate(token: str | None, user_header: str | None, settings: Settings) -> str:
    """The user id behind a bearer token (and X-User-Id for the service token)."""
    if not token:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    service = settings.service_token.get_secret_value() if settings.service_token else None
    if service and hmac.compare_digest(token.encode(), service.encode()):
        if not user_header:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "the service token needs an X-User-Id header"
            )
        if not USER_ID.fullmatch(user_header):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                "X-User-Id must be 1-64 letters, digits or _.@- and start with a letter or digit",
            )
        return user_header
    for known, user in user_tokens(settings).items():
        if hmac.compare_digest(token.encode(), known.encode()):
            return user
    raise _unauthorized("invalid bearer token")
