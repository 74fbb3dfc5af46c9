"""The one place where exceptions become HTTP statuses. Bodies are ``{"error": "<what to change>"}``;
no server path, exception text of unknown errors or stack trace ever reaches a client.

    400  the body cannot be parsed (malformed JSON or multipart, invalid base64)
    401  the bearer token is missing or wrong (when auth is on)
    404  no such job
    409  the job is not in a state for that (content of an unfinished job, cancel of a finished one)
    413  the body is larger than the upload limit
    415  the body or the photo is of a type we do not take
    422  parsed, but a value is not acceptable (wanray.inputs.InvalidInput, schema errors)
    503  the queue is full (with Retry-After) or Redis is unreachable
    500  anything else (logged with a reference the client can quote)
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wanray.inputs import InvalidInput

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str):
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unavailable(ApiError):
    status = 503


def describe_validation_errors(errors: list[dict]) -> str:
    """pydantic's errors as one readable line: ``frames: Input should be a valid integer; ...`` (values are
    not echoed: they may be megabytes of base64)."""
    parts = []
    for err in errors[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",)) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (see the API docs at /docs for the fields)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _body(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError):
        return _body(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        messages = {404: "no such path; the API is described at /docs", 405: "method not allowed on this path"}
        return _body(e.status_code, messages.get(e.status_code, str(e.detail)), getattr(e, "headers", None))

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, e: InvalidInput):
        return _body(422, str(e))

    @app.exception_handler(RequestValidationError)
    async def request_validation(_: Request, e: RequestValidationError):
        return _body(422, describe_validation_errors(e.errors()))

    @app.exception_handler(ValidationError)
    async def validation(_: Request, e: ValidationError):
        return _body(422, describe_validation_errors(e.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
        if _is_redis_error(e):
            return _body(503, f"the job store is unreachable; try again shortly (ref {ref})", {"Retry-After": "5"})
        return _body(500, f"internal error (ref {ref}); the server log has the details")


def _is_redis_error(e: Exception) -> bool:
    try:
        import redis
    except ImportError:
        return False
    return isinstance(e, redis.RedisError)
