"""Broker credentials at rest: a Fernet token in the column, plaintext only in memory, keys rotatable."""

import json

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as db
from django.db import transaction

from brokers.models import BrokerConnection
from tests.factories import BrokerConnectionFactory

pytestmark = pytest.mark.django_db

SECRETS = {"username": "desk-7", "api_key": "sk-live-5f0c2b1e-TOPSECRET", "pin": 4821}
KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()


def raw_column(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {BrokerConnection._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_column_holds_a_fernet_token_not_the_plaintext(settings):
    settings.FIELD_ENCRYPTION_KEY = KEY_OLD

    connection = BrokerConnectionFactory(credentials=SECRETS)

    raw = raw_column(connection.pk)
    assert "TOPSECRET" not in raw and "desk-7" not in raw and "api_key" not in raw
    assert raw.startswith("gAAAA")  # Fernet token version byte, base64
    assert json.loads(Fernet(KEY_OLD.encode()).decrypt(raw.encode())) == SECRETS


def test_credentials_round_trip_through_the_database():
    connection = BrokerConnectionFactory(credentials=SECRETS)

    loaded = BrokerConnection.objects.get(pk=connection.pk)

    assert loaded.credentials == SECRETS
    assert loaded.has_credentials


def test_empty_credentials_read_back_as_an_empty_dict():
    connection = BrokerConnectionFactory()

    loaded = BrokerConnection.objects.get(pk=connection.pk)

    assert loaded.credentials == {}
    assert not loaded.has_credentials
    assert "{}" not in raw_column(connection.pk)


def test_same_credentials_encrypt_differently_each_time():
    first = BrokerConnectionFactory(credentials=SECRETS)
    second = BrokerConnectionFactory(credentials=SECRETS)

    assert raw_column(first.pk) != raw_column(second.pk)


def test_rotation_a_second_key_still_decrypts_old_rows_and_new_writes_use_the_first(settings):
    settings.FIELD_ENCRYPTION_KEY = KEY_OLD
    connection = BrokerConnectionFactory(credentials=SECRETS)

    settings.FIELD_ENCRYPTION_KEY = f"{KEY_NEW}, {KEY_OLD}"
    loaded = BrokerConnection.objects.get(pk=connection.pk)
    assert loaded.credentials == SECRETS
    loaded.save()  # re-encrypts with the first key

    raw = raw_column(connection.pk)
    assert json.loads(Fernet(KEY_NEW.encode()).decrypt(raw.encode())) == SECRETS
    settings.FIELD_ENCRYPTION_KEY = KEY_NEW  # the old key can now be retired
    assert BrokerConnection.objects.get(pk=connection.pk).credentials == SECRETS


def test_wrong_key_raises_improperly_configured(settings):
    settings.FIELD_ENCRYPTION_KEY = KEY_OLD
    connection = BrokerConnectionFactory(credentials=SECRETS)

    settings.FIELD_ENCRYPTION_KEY = KEY_NEW

    with pytest.raises(ImproperlyConfigured, match=r"BrokerConnection\.credentials.*does not match"):
        BrokerConnection.objects.get(pk=connection.pk)


@pytest.mark.parametrize("key", ["", " , ", "not-a-fernet-key"])
def test_missing_or_malformed_key_raises_improperly_configured(settings, key):
    settings.FIELD_ENCRYPTION_KEY = key

    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"), transaction.atomic():
        BrokerConnectionFactory(credentials=SECRETS)
    assert not BrokerConnection.objects.exists()


def test_repr_and_str_never_contain_secrets():
    connection = BrokerConnectionFactory(name="Desk login", credentials=SECRETS)
    loaded = BrokerConnection.objects.get(pk=connection.pk)

    for text in (repr(connection), repr(loaded), str(loaded), repr([loaded])):
        assert "TOPSECRET" not in text and "desk-7" not in text and "4821" not in text
    assert repr(loaded) == f"<BrokerConnection {loaded.pk} paper 'Desk login'>"


def test_serialization_carries_ciphertext_only():
    connection = BrokerConnectionFactory(credentials=SECRETS)

    dumped = serializers.serialize("json", BrokerConnection.objects.filter(pk=connection.pk))

    assert "TOPSECRET" not in dumped and "desk-7" not in dumped
    token = json.loads(dumped)[0]["fields"]["credentials"]
    assert token.startswith("gAAAA")


def test_dumped_credentials_load_back_unchanged():
    """dumpdata writes the ciphertext (above); loaddata of that dump must restore the same credentials."""
    connection = BrokerConnectionFactory(credentials=SECRETS)
    dumped = serializers.serialize("json", BrokerConnection.objects.filter(pk=connection.pk))
    BrokerConnection.objects.filter(pk=connection.pk).delete()

    for restored in serializers.deserialize("json", dumped):
        restored.save()

    assert BrokerConnection.objects.get(pk=connection.pk).credentials == SECRETS
