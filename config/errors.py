"""The one base class for expected, explainable failures: a machine code, a sentence, maybe a field.

Services and domain modules raise these; the API renders them as {"code", "detail", "field"}
with `http_status`, the admin shows the sentence, tasks record it.
"""


class DomainError(Exception):
    code: str = "error"
    http_status: int = 400

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.field = field


class NotFoundError(DomainError):
    code = "not_found"
    http_status = 404


class ConflictError(DomainError):
    code = "conflict"
    http_status = 409


class UnprocessableError(DomainError):
    code = "unprocessable"
    http_status = 422
