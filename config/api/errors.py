"""Every API error has one shape: {"code": "...", "detail": "a sentence", "field": "..."}.

Validation errors also list each problem under "errors"; domain errors may add context
(for example the denials of a risk check).
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from config.errors import DomainError

# DRF's generic codes, renamed where a more telling one exists.
_CODES = {
    "required": "missing_field",
    "null": "missing_field",
    "blank": "missing_field",
    "invalid_choice": "invalid_choice",
    "parse_error": "malformed_body",
    "not_authenticated": "not_authenticated",
    "authentication_failed": "not_authenticated",
    "permission_denied": "permission_denied",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "unsupported_media_type": "unsupported_media_type",
    "throttled": "rate_limited",
}


def error_body(code: str, detail: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": code, "detail": detail, "field": field, **extra}


def _flatten(detail: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """DRF's nested error structure -> a flat list of {field, code, detail}."""
    if isinstance(detail, dict):
        return [
            e for key, value in detail.items() for e in _flatten(value, key if prefix is None else f"{prefix}.{key}")
        ]
    if isinstance(detail, list):
        return [e for item in detail for e in _flatten(item, prefix)]
    field = None if prefix in (None, "non_field_errors") else prefix
    code = getattr(detail, "code", "invalid") or "invalid"
    return [{"field": field, "code": _CODES.get(code, code), "detail": str(detail)}]


def _sentence(error: dict[str, Any]) -> str:
    if error["code"] == "missing_field" and error["field"]:
        return f"{error['field']} is required."
    return error["detail"]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(
            error_body(exc.code, exc.detail, exc.field, **getattr(exc, "extra", {})), status=exc.http_status
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        first = errors[0] if errors else {"field": None, "code": "invalid", "detail": "Invalid input."}
        return Response(error_body(first["code"], _sentence(first), first["field"], errors=errors), status=400)
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        headers = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait:
            headers["Retry-After"] = str(int(exc.wait))
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        body = error_body(_CODES.get(code, code), str(exc.detail))
        return Response(body, status=exc.status_code, headers=headers)
    return None
