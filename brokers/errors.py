"""Broker errors, mapped once at the adapter boundary; each kind tells the caller what to do next."""


class BrokerError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BrokerRejected(BrokerError):
    """A definitive "no" from the broker: the request had no effect. Never retried."""


class BrokerUnavailable(BrokerError):
    """The request did not reach the broker (connection refused, 503, rate limited): safe to retry."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BrokerAuthError(BrokerError):
    """Credentials refused: the connection is disabled until a human fixes it."""


class OutcomeUnknown(BrokerError):
    """The request may or may not have reached the broker (timeout after sending).

    Never resend: the order stays unresolved until reconciliation asks the broker by client id.
    """
