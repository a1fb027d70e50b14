"""The project's one exception family; create_app's error handlers turn them into responses."""

from __future__ import annotations


class LayerdeckError(Exception):
    """An error with an HTTP status, a stable code and a sentence a person understands."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, object] = {}  # more fields for the JSON error object (e.g. suggested_port)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadRequest(LayerdeckError):
    status = 400
    code = "bad_request"


class TooLarge(LayerdeckError):
    status = 413
    code = "too_large"


class NotFound(LayerdeckError):
    status = 404
    code = "not_found"


class Conflict(LayerdeckError):
    status = 409
    code = "conflict"


class EngineUnavailable(LayerdeckError):
    status = 503
    code = "engine_unavailable"


class Unauthenticated(LayerdeckError):
    status = 401
    code = "unauthenticated"


class Forbidden(LayerdeckError):
    status = 403
    code = "forbidden"


class TooManyAttempts(LayerdeckError):
    status = 429
    code = "too_many_attempts"


class Busy(LayerdeckError):
    status = 503
    code = "busy"
