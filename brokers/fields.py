"""A model field that keeps a JSON object encrypted at rest with Fernet (broker credentials)."""

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def _fernet() -> MultiFernet:
    # FIELD_ENCRYPTION_KEY may hold several comma-separated keys: the first encrypts, every key
    # decrypts, so a key can be rotated without a flag day.
    keys = [k.strip() for k in settings.FIELD_ENCRYPTION_KEY.split(",") if k.strip()]
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty.")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be url-safe base64 Fernet keys.") from exc


class EncryptedJSONField(models.TextField):
    """Stores a dict as a Fernet token. The plaintext exists only in memory, never in the database."""

    description = "JSON object encrypted with Fernet"

    def _decrypt(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(_fernet().decrypt(token.encode()))
        except InvalidToken as exc:
            raise ImproperlyConfigured(
                f"Cannot decrypt {self.model.__name__}.{self.name}: FIELD_ENCRYPTION_KEY does not match."
            ) from exc

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        return self._decrypt(value or "")

    def to_python(self, value: Any) -> Any:
        # A string here is the token written by value_to_string (dumpdata), read back by loaddata.
        return self._decrypt(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata) carries the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj)) or ""
