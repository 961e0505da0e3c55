"""Rotating HUB_ENCRYPTION_KEYS with no downtime: prepend a key, re-encrypt, drop the old one."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command

from hub import crypto
from hub.models import AdapterConnection, WebhookEndpoint
from hub.services.webhooks import webhook_endpoint_create
from tests.factories import make_participant, principal_for


@pytest.fixture
def keys(monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    def use(*names: str) -> None:
        monkeypatch.setenv("HUB_ENCRYPTION_KEYS", ",".join(names))
        crypto._fernet.cache_clear()

    use(old)
    yield old, new, use
    crypto._fernet.cache_clear()


@pytest.mark.django_db
def test_reencrypt_moves_every_secret_to_the_newest_key(keys):
    old, new, use = keys
    bank = make_participant(role="bank")
    connection = AdapterConnection.objects.create(
        participant=bank,
        adapter="bank",
        livemode=False,
        sandbox=True,
        config={"base_url": "http://127.0.0.1:9", "client_id": "c"},
        credentials_encrypted=crypto.encrypt(json.dumps({"signing_key": "s3cret-signing-key"})),
    )
    endpoint, secret = webhook_endpoint_create(
        actor=principal_for(bank), url="https://hooks.example.com/x", enabled_events=["*"]
    )

    use(new, old)  # the new key first: new values use it, old ones still decrypt
    assert json.loads(crypto.decrypt(connection.credentials_encrypted)) == {
        "signing_key": "s3cret-signing-key"
    }
    call_command("credentials", "reencrypt")

    use(new)  # the old key is gone: everything must still decrypt
    connection.refresh_from_db()
    endpoint = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert json.loads(crypto.decrypt(connection.credentials_encrypted)) == {
        "signing_key": "s3cret-signing-key"
    }
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    use(old)  # and the old key alone no longer reads them
    with pytest.raises(InvalidToken):
        crypto.decrypt(connection.credentials_encrypted)


@pytest.mark.django_db
def test_reencrypt_moves_the_logs_signing_keys_too(keys):
    from hub.models import SigningKey
    from hub.transparency.keys import signing_key_active, signing_key_rotate

    old, new, use = keys
    first = signing_key_active()
    signing_key_rotate()
    before = {k.pk: k.private_key_encrypted for k in SigningKey.objects.all()}

    use(new, old)
    call_command("credentials", "reencrypt")
    use(new)

    after = {k.pk: k.private_key_encrypted for k in SigningKey.objects.all()}
    assert set(after) == set(before)
    assert all(after[pk] != before[pk] for pk in before)
    retired = SigningKey.objects.get(key_id=first.key_id)
    assert len(crypto.decrypt(retired.private_key_encrypted)) > 0  # the new key reads it
    use(old)  # and the old key alone no longer does
    with pytest.raises(InvalidToken):
        crypto.decrypt(retired.private_key_encrypted)


@pytest.mark.django_db
def test_the_operator_rotates_the_logs_signing_key_from_the_command_line(capsys):
    from hub.transparency.keys import signing_key_active, signing_keys

    first = signing_key_active()

    call_command("transparency_key", "rotate")

    out = capsys.readouterr().out.splitlines()
    keys = signing_keys()
    assert [k.active for k in keys] == [False, True]
    assert keys[0].key_id == first.key_id
    assert out[0] == f"new active key {keys[1].key_id}"
    assert out[1].startswith(f"{keys[0].vkey}  retired ")
    assert out[2] == f"{keys[1].vkey}  active"
