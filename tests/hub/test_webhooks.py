"""Standard Webhooks signatures, and the webhook endpoints API (create, list, retrieve, update,
rotate the secret), with deliveries made in-process to a real loopback receiver."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from hub.crypto import decrypt
from hub.models import Event, WebhookDelivery, WebhookEndpoint
from hub.services.events import event_emit
from hub.services.webhooks import MAX_ENDPOINTS_PER_PARTICIPANT, event_dispatch, webhook_attempt
from hub.webhook_signature import WebhookVerificationError, sign, verify
from tests.conftest import Api, Tenant, error_of
from tests.factories import issue_key
from tests.support.standard_webhooks import (
    expected_signature,
    matching_signatures,
    signatures_of,
)

# The test vector of the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

ENDPOINT_FIELDS = {
    "id",
    "object",
    "url",
    "description",
    "enabled_events",
    "status",
    "disabled_reason",
    "livemode",
    "metadata",
    "created_at",
}


def spec_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    headers.update(overrides)
    return headers


# --- signatures ------------------------------------------------------------------------------


def test_independent_implementation_reproduces_the_spec_vector():
    assert (
        "v1,"
        + expected_signature(
            secret=SPEC_SECRET, msg_id=SPEC_ID, timestamp=str(SPEC_TIMESTAMP), body=SPEC_BODY
        )
        == SPEC_SIGNATURE
    )


def test_hub_sign_reproduces_the_spec_vector():
    assert (
        sign(secret=SPEC_SECRET, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_verify_accepts_within_the_tolerance(skew):
    verify(secret=SPEC_SECRET, headers=spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP + skew)


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_verify_refuses_outside_the_tolerance(skew):
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(
            secret=SPEC_SECRET, headers=spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP + skew
        )


def test_verify_takes_a_custom_tolerance():
    verify(
        secret=SPEC_SECRET,
        headers=spec_headers(),
        body=SPEC_BODY,
        now=SPEC_TIMESTAMP + 3600,
        tolerance=3600,
    )
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(
            secret=SPEC_SECRET,
            headers=spec_headers(),
            body=SPEC_BODY,
            now=SPEC_TIMESTAMP + 11,
            tolerance=10,
        )


@pytest.mark.parametrize(
    "body",
    [b'{"test": 2432232315}', b'{"test": 2432232314} ', b'{"test":2432232314}', b""],
)
def test_verify_refuses_a_tampered_body(body):
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(secret=SPEC_SECRET, headers=spec_headers(), body=body, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    "headers",
    [
        spec_headers(**{"webhook-id": "msg_other"}),
        spec_headers(**{"webhook-timestamp": str(SPEC_TIMESTAMP + 1)}),
    ],
)
def test_verify_refuses_changed_id_or_timestamp(headers):
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(secret=SPEC_SECRET, headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_refuses_the_wrong_secret():
    other = "whsec_" + base64.b64encode(b"\x01" * 24).decode()
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(secret=other, headers=spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_missing_headers(missing):
    headers = spec_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(secret=SPEC_SECRET, headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(
            secret=SPEC_SECRET,
            headers={**headers, missing: ""},
            body=SPEC_BODY,
            now=SPEC_TIMESTAMP,
        )


def test_verify_refuses_a_timestamp_that_is_not_an_integer():
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        verify(
            secret=SPEC_SECRET,
            headers=spec_headers(**{"webhook-timestamp": "yesterday"}),
            body=SPEC_BODY,
            now=SPEC_TIMESTAMP,
        )


def test_verify_finds_one_valid_signature_among_several():
    bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    bare = SPEC_SIGNATURE.removeprefix("v1,")
    for listed in (
        f"{bad} {SPEC_SIGNATURE}",
        f"{SPEC_SIGNATURE} {bad}",
        f"v2,{bare} {bad} {SPEC_SIGNATURE} garbage",
    ):
        verify(
            secret=SPEC_SECRET,
            headers=spec_headers(**{"webhook-signature": listed}),
            body=SPEC_BODY,
            now=SPEC_TIMESTAMP,
        )
    # The right signature under another version is not a v1 signature.
    for listed in (f"{bad} {bad}", f"v2,{bare}", bare):
        with pytest.raises(WebhookVerificationError, match="no signature matches"):
            verify(
                secret=SPEC_SECRET,
                headers=spec_headers(**{"webhook-signature": listed}),
                body=SPEC_BODY,
                now=SPEC_TIMESTAMP,
            )


def test_verify_reads_headers_in_any_case():
    headers = {k.title(): v for k, v in spec_headers().items()}
    verify(secret=SPEC_SECRET, headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_accepts_secrets_without_base64_padding():
    key = bytes(range(32))  # 44 base64 characters, one of them padding
    padded = "whsec_" + base64.b64encode(key).decode()
    assert padded.endswith("=")
    signature = "v1," + expected_signature(
        secret=padded, msg_id=SPEC_ID, timestamp=str(SPEC_TIMESTAMP), body=SPEC_BODY
    )
    headers = spec_headers(**{"webhook-signature": signature})
    verify(secret=padded, headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)
    verify(secret=padded.rstrip("="), headers=headers, body=SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_refuses_a_secret_that_is_not_base64():
    with pytest.raises(WebhookVerificationError, match="base64"):
        verify(
            secret="whsec_not*base64!", headers=spec_headers(), body=SPEC_BODY, now=SPEC_TIMESTAMP
        )


# --- endpoints API ---------------------------------------------------------------------------


def create_endpoint(
    api: Api, tenant: Tenant, url: str = "https://hooks.example.com/a", **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "enabled_events": ["participant.updated"], **fields}
    response = api.post("/v1/webhook_endpoints", body, key=tenant.key)
    assert response.status_code == 201, response.content
    result: dict[str, Any] = response.json()
    return result


def test_create_shows_the_secret_once_and_keeps_it_encrypted(api, tenants):
    merchant = tenants["merchant"]
    response = api.post(
        "/v1/webhook_endpoints",
        {
            "url": "https://hooks.example.com/settlement",
            "enabled_events": ["participant.updated", "api_key.created", "participant.updated"],
            "description": "ERP",
            "metadata": {"team": "finance"},
        },
        key=merchant.key,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    secret = body.pop("secret")
    assert body == {
        "id": body["id"],
        "object": "webhook_endpoint",
        "url": "https://hooks.example.com/settlement",
        "description": "ERP",
        "enabled_events": ["api_key.created", "participant.updated"],
        "status": "enabled",
        "disabled_reason": "",
        "livemode": False,
        "metadata": {"team": "finance"},
        "created_at": body["created_at"],
    }
    assert body["id"].startswith("we_")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24

    # Never shown again.
    fetched = api.get(f"/v1/webhook_endpoints/{body['id']}", key=merchant.key)
    assert fetched.status_code == 200
    assert fetched.json() == body
    listed = api.get("/v1/webhook_endpoints", key=merchant.key).json()
    assert listed["data"] == [body]

    # At rest: a ciphertext that contains neither the secret nor its key, and decrypts to it.
    (stored,) = WebhookEndpoint.objects.filter(pk=body["id"]).values_list(
        "secret_encrypted", flat=True
    )
    assert secret not in stored
    assert secret.removeprefix("whsec_") not in stored
    assert decrypt(stored) == secret

    # The outbox has the creation, without the secret.
    event = Event.objects.get(type="webhook_endpoint.created")
    assert event.participant_id == merchant.id
    assert event.livemode is False
    assert event.request_id == response["Request-Id"]
    assert event.data == {
        "id": body["id"],
        "url": "https://hooks.example.com/settlement",
        "enabled_events": ["api_key.created", "participant.updated"],
        "status": "enabled",
    }
    assert secret.removeprefix("whsec_") not in json.dumps(event.data)


def test_each_endpoint_gets_its_own_secret(api, tenants):
    first = create_endpoint(api, tenants["merchant"])
    second = create_endpoint(api, tenants["merchant"])
    assert first["secret"] != second["secret"]


def test_list_and_retrieve_show_only_the_callers_endpoints(api, tenants):
    merchant, other, operator = tenants["merchant"], tenants["other_merchant"], tenants["operator"]
    mine = [create_endpoint(api, merchant)["id"] for _ in range(2)]
    theirs = create_endpoint(api, other)["id"]

    def listed(tenant: Tenant, **params: str) -> dict[str, Any]:
        response = api.get("/v1/webhook_endpoints", key=tenant.key, params=params)
        assert response.status_code == 200, response.content
        result: dict[str, Any] = response.json()
        return result

    assert [e["id"] for e in listed(merchant)["data"]] == sorted(mine, reverse=True)
    assert [e["id"] for e in listed(other)["data"]] == [theirs]
    assert {e["id"] for e in listed(operator)["data"]} == {*mine, theirs}
    page = listed(merchant, limit="1")
    assert [e["id"] for e in page["data"]] == [max(mine)]
    assert page["has_more"] is True

    assert api.get(f"/v1/webhook_endpoints/{theirs}", key=other.key).status_code == 200
    response = api.get(f"/v1/webhook_endpoints/{theirs}", key=merchant.key)
    assert response.status_code == 404
    assert error_of(response)["code"] == "resource_missing"
    assert api.get(f"/v1/webhook_endpoints/{theirs}", key=operator.key).status_code == 200

    # Test and live endpoints never mix.
    live_key = issue_key(merchant.participant, livemode=True)
    assert api.get("/v1/webhook_endpoints", key=live_key).json()["data"] == []
    assert api.get(f"/v1/webhook_endpoints/{mine[0]}", key=live_key).status_code == 404


def test_update_disables_enables_and_changes_url_and_events(api, tenants):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant)
    path = f"/v1/webhook_endpoints/{endpoint['id']}"

    response = api.post(path, {"status": "disabled"}, key=merchant.key)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "disabled"
    assert response.json()["disabled_reason"] == "disabled by the owner"

    response = api.post(path, {"status": "enabled"}, key=merchant.key)
    assert response.json()["status"] == "enabled"
    assert response.json()["disabled_reason"] == ""

    response = api.post(
        path,
        {
            "url": "https://hooks.example.com/v2",
            "enabled_events": ["*"],
            "description": "new",
            "metadata": {"k": "v"},
        },
        key=merchant.key,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS
    assert (body["url"], body["enabled_events"], body["description"], body["metadata"]) == (
        "https://hooks.example.com/v2",
        ["*"],
        "new",
        {"k": "v"},
    )
    assert api.get(path, key=merchant.key).json() == body

    updates = Event.objects.filter(type="webhook_endpoint.updated").order_by("pk")
    assert [e.data["status"] for e in updates] == ["disabled", "enabled", "enabled"]
    assert updates.last().data["url"] == "https://hooks.example.com/v2"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"enabled_events": ["participant.updated", "no.such_event"]}, "event_type_unknown", None),
        ({"enabled_events": []}, "parameter_invalid", "enabled_events"),
        ({"url": "ftp://hooks.example.com/a"}, "url_invalid", "url"),
        ({"status": "paused"}, "parameter_invalid", "status"),
        ({"secret": "whsec_mine"}, None, None),
    ],
)
def test_update_refuses_bad_input_and_changes_nothing(api, tenants, change, code, param):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant)
    endpoint.pop("secret")
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    events_before = Event.objects.count()

    response = api.post(path, change, key=merchant.key)

    assert response.status_code == 400
    error = error_of(response)
    if code is not None:
        assert error["code"] == code
    if code == "event_type_unknown":
        assert error["param"] == "enabled_events"
        assert "no.such_event" in error["message"]
    elif param is not None:
        assert error["param"] == param
    assert api.get(path, key=merchant.key).json() == endpoint
    assert Event.objects.count() == events_before


def test_create_refuses_unknown_event_types(api, tenants):
    response = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://hooks.example.com/a", "enabled_events": ["payout.exploded"]},
        key=tenants["merchant"].key,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("event_type_unknown", "enabled_events")
    assert WebhookEndpoint.objects.count() == 0
    assert Event.objects.count() == 0


def test_someone_elses_endpoint_cannot_be_updated_or_rotated(api, tenants):
    endpoint = create_endpoint(api, tenants["other_merchant"])
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    merchant = tenants["merchant"]
    for target, body in ((path, {"status": "disabled"}), (path + "/rotate_secret", {})):
        response = api.post(target, body, key=merchant.key)
        assert response.status_code == 404
        assert error_of(response)["code"] == "resource_missing"
    row = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert row.status == "enabled"
    assert decrypt(row.secret_encrypted) == endpoint["secret"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/a",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "hooks.example.com/no-scheme",
        "https://",
        "https://user:password@hooks.example.com/a",
    ],
)
def test_create_refuses_urls_that_are_not_http(api, tenants, url):
    response = api.post(
        "/v1/webhook_endpoints",
        {"url": url, "enabled_events": ["*"]},
        key=tenants["merchant"].key,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("url_invalid", "url")
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/h", "http://10.1.2.3/h", "http://localhost/h", "http://[::1]/h"]
)
def test_private_receivers_are_refused_unless_allowed(api, tenants, settings, url):
    settings.HUB = {**settings.HUB, "WEBHOOK_ALLOW_PRIVATE": False}
    merchant = tenants["merchant"]
    response = api.post(
        "/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]}, key=merchant.key
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "url_not_public"
    assert WebhookEndpoint.objects.count() == 0
    create_endpoint(api, merchant, url="https://8.8.8.8/h")  # a public address: fine


def test_endpoints_are_limited_per_participant_and_mode(api, tenants):
    merchant = tenants["merchant"]
    for _ in range(MAX_ENDPOINTS_PER_PARTICIPANT):
        create_endpoint(api, merchant)
    events_before = Event.objects.count()

    response = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://hooks.example.com/one-more", "enabled_events": ["*"]},
        key=merchant.key,
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "webhook_endpoint_limit"
    assert WebhookEndpoint.objects.count() == MAX_ENDPOINTS_PER_PARTICIPANT
    assert Event.objects.count() == events_before
    # Other participants, and the same participant's live mode, have their own allowance.
    create_endpoint(api, tenants["other_merchant"])
    live = Tenant(merchant.participant, issue_key(merchant.participant, livemode=True))
    assert create_endpoint(api, live)["livemode"] is True


def test_disabled_endpoints_do_not_count_against_the_limit(api, tenants):
    merchant = tenants["merchant"]
    first = create_endpoint(api, merchant)
    for _ in range(MAX_ENDPOINTS_PER_PARTICIPANT - 1):
        create_endpoint(api, merchant)
    response = api.post(
        f"/v1/webhook_endpoints/{first['id']}", {"status": "disabled"}, key=merchant.key
    )
    assert response.status_code == 200
    replacement = create_endpoint(api, merchant)  # the disabled one freed its slot
    assert replacement["status"] == "enabled"

    # Enabling the old one again would make 17 enabled endpoints: refused, nothing changes.
    events_before = Event.objects.count()
    response = api.post(
        f"/v1/webhook_endpoints/{first['id']}", {"status": "enabled"}, key=merchant.key
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "webhook_endpoint_limit"
    assert WebhookEndpoint.objects.get(pk=first["id"]).status == "disabled"
    assert Event.objects.count() == events_before


def test_a_regulator_cannot_register_endpoints(api, tenants):
    response = api.post(
        "/v1/webhook_endpoints",
        {"url": "https://hooks.example.com/a", "enabled_events": ["*"]},
        key=tenants["regulator"].key,
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "role_forbidden"
    assert WebhookEndpoint.objects.count() == 0


# --- rotation, seen by a receiver ------------------------------------------------------------


def deliver_once(tenant: Tenant) -> None:
    """Emit an event for ``tenant`` and make its delivery's first attempt in-process."""
    with transaction.atomic():
        event = event_emit(
            type="participant.updated",
            owner=tenant.participant,
            livemode=False,
            data={"id": tenant.id},
        )
    assert event_dispatch(event_id=event.pk) == 1
    delivery = WebhookDelivery.objects.get(event=event)
    assert webhook_attempt(delivery_id=delivery.pk, attempt=0) == "succeeded"


def test_rotation_signs_with_both_secrets_until_the_overlap_ends(api, tenants, receiver):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant, url=receiver.url)
    old = endpoint["secret"]
    path = f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"

    before = timezone.now()
    response = api.post(path, {"expires_in": 3600}, key=merchant.key)
    after = timezone.now()

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    new = body["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert "secret" not in api.get(f"/v1/webhook_endpoints/{endpoint['id']}", key=merchant.key)
    row = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert row.previous_secret_expires_at is not None
    assert (
        before + timedelta(seconds=3600)
        <= row.previous_secret_expires_at
        <= after + timedelta(seconds=3600)
    )
    rotated = Event.objects.filter(type="webhook_endpoint.updated").get()
    assert rotated.data["id"] == endpoint["id"]
    assert old.removeprefix("whsec_") not in json.dumps(rotated.data)
    assert new.removeprefix("whsec_") not in json.dumps(rotated.data)

    # During the overlap: two signatures, one under each secret.
    deliver_once(merchant)
    (got,) = receiver.wait_for(1)
    assert len(signatures_of(got.headers)) == 2
    assert matching_signatures(secret=new, headers=got.headers, body=got.body) == 1
    assert matching_signatures(secret=old, headers=got.headers, body=got.body) == 1
    verify(secret=new, headers=got.headers, body=got.body)
    verify(secret=old, headers=got.headers, body=got.body)

    # Once the overlap has passed, only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    deliver_once(merchant)
    got = receiver.wait_for(2)[1]
    assert len(signatures_of(got.headers)) == 1
    assert matching_signatures(secret=new, headers=got.headers, body=got.body) == 1
    assert matching_signatures(secret=old, headers=got.headers, body=got.body) == 0
    with pytest.raises(WebhookVerificationError):
        verify(secret=old, headers=got.headers, body=got.body)


def test_rotation_without_overlap_signs_with_the_new_secret_only(api, tenants, receiver):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant, url=receiver.url)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"
    first = api.post(path, {"expires_in": 3600}, key=merchant.key).json()["secret"]

    response = api.post(path, {"expires_in": 0}, key=merchant.key)

    assert response.status_code == 200, response.content
    newest = response.json()["secret"]
    assert len({endpoint["secret"], first, newest}) == 3
    row = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert (row.previous_secret_encrypted, row.previous_secret_expires_at) == ("", None)
    deliver_once(merchant)
    (got,) = receiver.wait_for(1)
    assert len(signatures_of(got.headers)) == 1
    assert matching_signatures(secret=newest, headers=got.headers, body=got.body) == 1
    for stale in (endpoint["secret"], first):
        assert matching_signatures(secret=stale, headers=got.headers, body=got.body) == 0


@pytest.mark.parametrize("expires_in", [-1, 7 * 24 * 3600 + 1])
def test_rotation_refuses_an_overlap_out_of_range(api, tenants, expires_in):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant)
    before = WebhookEndpoint.objects.get(pk=endpoint["id"])
    events_before = Event.objects.count()

    response = api.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
        {"expires_in": expires_in},
        key=merchant.key,
    )

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("parameter_invalid", "expires_in")
    after = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert after.secret_encrypted == before.secret_encrypted
    assert after.previous_secret_encrypted == ""
    assert Event.objects.count() == events_before


def test_a_delivery_is_the_event_as_the_api_shows_it_signed_for_the_receiver(
    api, tenants, receiver
):
    merchant = tenants["merchant"]
    endpoint = create_endpoint(api, merchant, url=receiver.url)
    before = int(timezone.now().timestamp())
    deliver_once(merchant)
    after = int(timezone.now().timestamp()) + 1

    (got,) = receiver.wait_for(1)
    event = Event.objects.get(type="participant.updated")
    assert got.path == "/hooks"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == event.pk
    assert before <= int(got.headers["webhook-timestamp"]) <= after
    assert matching_signatures(secret=endpoint["secret"], headers=got.headers, body=got.body) == 1
    shown = api.get(f"/v1/events/{event.pk}", key=merchant.key)
    assert json.loads(got.body) == shown.json()
    assert json.loads(got.body)["data"] == {"object": {"id": merchant.id}}
