"""API keys: issued by the operator, shown once, stored as a keyed hash, scoped, revoked and
rotated; test and live keys never see each other's data."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from hub import errors
from hub.crypto import keyed_hash
from hub.models import ApiKey, Event
from hub.principal import ROLE_SCOPES
from hub.services.api_keys import api_key_authenticate, key_cache
from tests.conftest import api_key_of, error_of, needs_postgres, row_counts
from tests.factories import issue_key

SECRET = re.compile(r"hk_test_[A-Za-z0-9]{32}")
HOOK = {"url": "https://merchant.example/hooks", "enabled_events": ["*"]}


def issue(api, tenants, role="merchant", **body):
    response = api.post(
        f"/v1/participants/{tenants[role].id}/api_keys", body, key=tenants["operator"].key
    )
    assert response.status_code == 201, response.content
    return response.json()


def database_contains(text: str) -> list[str]:
    """Tables holding ``text`` anywhere in any column, as text or bytes."""
    needle, found = text.encode(), []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    raw = value if isinstance(value, bytes | memoryview) else str(value).encode()
                    if needle in bytes(raw):
                        found.append(table)
    return found


def test_operator_issues_a_test_key_shown_once(api, tenants):
    merchant = tenants["merchant"]
    before = timezone.now()
    key = issue(api, tenants, name="erp")
    secret = key.pop("secret")
    assert SECRET.fullmatch(secret), secret
    assert key.pop("id").startswith("key_")
    assert before <= datetime.fromisoformat(key.pop("created_at")) <= timezone.now()
    assert key == {
        "object": "api_key",
        "participant": merchant.id,
        "livemode": False,
        "name": "erp",
        "prefix": secret[:12],
        "scopes": sorted(ROLE_SCOPES["merchant"]),
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
        "replaced_by": None,
    }
    me = api.get("/v1/me", key=secret).json()
    assert (me["participant"]["id"], me["livemode"]) == (merchant.id, False)


def test_the_secret_is_never_listed_or_stored(api, tenants):
    merchant = tenants["merchant"]
    created = api.post(
        f"/v1/participants/{merchant.id}/api_keys",
        {"name": "erp"},
        key=tenants["operator"].key,
        idempotency_key="issue-erp",
    )
    secret = created.json()["secret"]
    for key in (tenants["operator"].key, merchant.key):
        listing = api.get(f"/v1/participants/{merchant.id}/api_keys", key=key)
        assert listing.status_code == 200
        rows = {row["id"]: row for row in listing.json()["data"]}
        row = rows[created.json()["id"]]
        assert "secret" not in row
        assert row["prefix"] == secret[:12]
        assert secret.encode() not in listing.content
        assert secret[12:].encode() not in listing.content

    stored = ApiKey.objects.get(pk=created.json()["id"])
    assert stored.key_hash == keyed_hash(secret)
    assert stored.key_hash != hashlib.sha256(secret.encode()).hexdigest()  # keyed, not plain
    assert database_contains(secret[12:]) == []

    # A retry with the same Idempotency-Key still gets the secret, from the encrypted record.
    again = api.post(
        f"/v1/participants/{merchant.id}/api_keys",
        {"name": "erp"},
        key=tenants["operator"].key,
        idempotency_key="issue-erp",
    )
    assert (again.content, again["Idempotent-Replayed"]) == (created.content, "true")


def test_keys_are_issued_in_the_operators_mode(api, tenants):
    op = tenants["operator"]
    before = row_counts()
    refused = api.post(
        f"/v1/participants/{tenants['bank'].id}/api_keys", {"livemode": True}, key=op.key
    )
    assert refused.status_code == 400
    assert (error_of(refused)["code"], error_of(refused)["param"]) == (
        "parameter_unknown",
        "livemode",
    )
    assert row_counts() == before

    test_key = issue(api, tenants, "bank")
    assert (test_key["livemode"], test_key["secret"][:8]) == (False, "hk_test_")

    live_operator = issue_key(op.participant, livemode=True)
    response = api.post(f"/v1/participants/{tenants['bank'].id}/api_keys", {}, key=live_operator)
    assert response.status_code == 201
    assert (response.json()["livemode"], response.json()["secret"][:8]) == (True, "hk_live_")
    assert ApiKey.objects.get(pk=response.json()["id"]).livemode is True


@pytest.mark.parametrize(
    ("role", "scopes"),
    [
        ("merchant", ["participants:write"]),
        ("regulator", ["webhooks:write"]),
        ("bank", []),
        ("bank", ["events:read", "root"]),
    ],
)
def test_scopes_beyond_the_role_are_refused(api, tenants, role, scopes):
    before = row_counts()
    response = api.post(
        f"/v1/participants/{tenants[role].id}/api_keys",
        {"scopes": scopes},
        key=tenants["operator"].key,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == (
        ("parameter_invalid", "scopes.1") if "root" in scopes else ("scope_invalid", "scopes")
    )
    assert row_counts() == before


def test_narrowed_scopes_are_enforced(api, tenants):
    narrow = issue(api, tenants, scopes=["participants:read"])
    assert narrow["scopes"] == ["participants:read"]
    secret = narrow["secret"]
    assert api.get("/v1/participants", key=secret).status_code == 200
    assert api.get("/v1/me", key=secret).status_code == 200
    before = row_counts()
    for response in (
        api.get("/v1/events", key=secret),
        api.get(f"/v1/participants/{tenants['merchant'].id}/api_keys", key=secret),
        api.post("/v1/webhook_endpoints", HOOK, key=secret),
        api.post(f"/v1/api_keys/{narrow['id']}/rotate", {}, key=secret),
    ):
        assert response.status_code == 403
        error = error_of(response)
        assert (error["type"], error["code"]) == ("permission_error", "scope_missing")
    assert row_counts() == before


def test_a_narrow_key_cannot_rotate_its_way_to_a_wider_one(api, tenants):
    merchant = tenants["merchant"]
    keys_only = issue(api, tenants, scopes=["api_keys:write"])
    full = api_key_of(merchant.key)
    before = row_counts()
    response = api.post(f"/v1/api_keys/{full.pk}/rotate", {}, key=keys_only["secret"])
    assert response.status_code == 403
    assert error_of(response)["code"] == "scope_missing"
    full.refresh_from_db()
    assert (full.replaced_by_id, full.expires_at) == (None, None)
    assert row_counts() == before

    # Rotating itself keeps its own narrow scopes.
    response = api.post(f"/v1/api_keys/{keys_only['id']}/rotate", {}, key=keys_only["secret"])
    assert response.status_code == 201
    assert response.json()["scopes"] == ["api_keys:write"]


def test_revoked_keys_get_401(api, tenants):
    merchant = tenants["merchant"]
    spare = issue(api, tenants)
    assert api.get("/v1/me", key=spare["secret"]).status_code == 200
    response = api.post(f"/v1/api_keys/{spare['id']}/revoke", {}, key=merchant.key)
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    event = Event.objects.get(type="api_key.revoked")
    assert (event.participant_id, event.data["id"]) == (merchant.id, spare["id"])

    before = row_counts()
    for call in (
        lambda: api.get("/v1/me", key=spare["secret"]),
        lambda: api.post(f"/v1/api_keys/{spare['id']}/rotate", {}, key=spare["secret"]),
    ):
        refused = call()
        assert refused.status_code == 401
        error = error_of(refused)
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert refused["WWW-Authenticate"] == 'Bearer realm="hub"'
    again = api.post(f"/v1/api_keys/{spare['id']}/revoke", {}, key=merchant.key)
    assert again.status_code == 409
    assert error_of(again)["code"] == "api_key_revoked"
    assert row_counts() == before


def test_a_key_can_revoke_itself(api, tenants):
    merchant = tenants["merchant"]
    own = api_key_of(merchant.key)
    assert api.post(f"/v1/api_keys/{own.pk}/revoke", {}, key=merchant.key).status_code == 200
    assert api.get("/v1/me", key=merchant.key).status_code == 401


def test_a_merchant_cannot_touch_another_participants_key(api, tenants):
    merchant, other = tenants["merchant"], tenants["other_merchant"]
    theirs = api_key_of(other.key)
    before = row_counts()
    for action in ("revoke", "rotate"):
        response = api.post(f"/v1/api_keys/{theirs.pk}/{action}", {}, key=merchant.key)
        assert response.status_code == 404
        assert error_of(response)["code"] == "resource_missing"
    theirs.refresh_from_db()
    assert (theirs.revoked_at, theirs.replaced_by_id) == (None, None)
    assert api.get("/v1/me", key=other.key).status_code == 200
    assert row_counts() == before
    listing = api.get(f"/v1/participants/{other.id}/api_keys", key=merchant.key)
    assert listing.status_code == 404


def test_the_operator_can_revoke_any_key(api, tenants):
    theirs = api_key_of(tenants["other_merchant"].key)
    response = api.post(f"/v1/api_keys/{theirs.pk}/revoke", {}, key=tenants["operator"].key)
    assert response.status_code == 200
    assert api.get("/v1/me", key=tenants["other_merchant"].key).status_code == 401


def test_rotation_overlaps_for_expires_in(api, tenants):
    merchant = tenants["merchant"]
    old = api_key_of(merchant.key)
    before = timezone.now()
    response = api.post(f"/v1/api_keys/{old.pk}/rotate", {"expires_in": 3600}, key=merchant.key)
    after = timezone.now()
    assert response.status_code == 201
    new = response.json()
    assert SECRET.fullmatch(new["secret"])
    assert (new["participant"], new["scopes"], new["name"]) == (
        merchant.id,
        sorted(old.scopes),
        old.name,
    )
    old.refresh_from_db()
    assert old.replaced_by_id == new["id"]
    assert old.expires_at is not None
    assert before + timedelta(hours=1) <= old.expires_at <= after + timedelta(hours=1)
    event = Event.objects.get(type="api_key.rotated")
    assert (event.data["id"], event.data["replaces"]) == (new["id"], old.pk)
    assert new["secret"] not in str(event.data)

    # Both work during the overlap...
    assert api.get("/v1/me", key=new["secret"]).json()["api_key"] == new["id"]
    assert api.get("/v1/me", key=merchant.key).json()["api_key"] == old.pk
    # ...and the old one stops when it expires.
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    key_cache.clear()  # as if API_KEY_CACHE_SECONDS had passed since the last request
    assert api.get("/v1/me", key=merchant.key).status_code == 401
    assert api.get("/v1/me", key=new["secret"]).status_code == 200


def test_rotation_with_no_overlap_stops_the_old_key_at_once(api, tenants):
    merchant = tenants["merchant"]
    old = api_key_of(merchant.key)
    response = api.post(f"/v1/api_keys/{old.pk}/rotate", {"expires_in": 0}, key=merchant.key)
    assert response.status_code == 201
    refused = api.get("/v1/me", key=merchant.key)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "invalid_api_key"
    assert api.get("/v1/me", key=response.json()["secret"]).status_code == 200


def test_a_key_is_rotated_once(api, tenants):
    merchant = tenants["merchant"]
    old = api_key_of(merchant.key)
    first = api.post(f"/v1/api_keys/{old.pk}/rotate", {}, key=merchant.key)
    assert first.status_code == 201
    before = row_counts()
    for key in (merchant.key, first.json()["secret"], tenants["operator"].key):
        again = api.post(f"/v1/api_keys/{old.pk}/rotate", {}, key=key)
        assert again.status_code == 409
        assert error_of(again)["code"] == "api_key_rotated"
    assert row_counts() == before
    # The successor itself can be rotated.
    successor = first.json()
    assert (
        api.post(f"/v1/api_keys/{successor['id']}/rotate", {}, key=successor["secret"]).status_code
        == 201
    )


@pytest.mark.parametrize("expires_in", [-1, 7 * 24 * 3600 + 1])
def test_rotation_overlap_is_bounded(api, tenants, expires_in):
    merchant = tenants["merchant"]
    old = api_key_of(merchant.key)
    before = row_counts()
    response = api.post(
        f"/v1/api_keys/{old.pk}/rotate", {"expires_in": expires_in}, key=merchant.key
    )
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == (
        "parameter_invalid",
        "expires_in",
    )
    old.refresh_from_db()
    assert (old.expires_at, old.replaced_by_id) == (None, None)
    assert row_counts() == before


def test_last_used_at_is_recorded_coarsely(api, tenants):
    spare = issue(api, tenants)
    key = ApiKey.objects.get(pk=spare["id"])
    assert key.last_used_at is None
    before = timezone.now()
    assert api.get("/v1/me", key=spare["secret"]).status_code == 200
    after = timezone.now()
    key.refresh_from_db()
    first_use = key.last_used_at
    assert first_use is not None
    assert before <= first_use <= after

    # Within the resolution (a minute) further uses write nothing...
    assert api.get("/v1/me", key=spare["secret"]).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == first_use
    # ...after it, the next use is recorded.
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first_use - timedelta(minutes=2))
    key_cache.clear()
    assert api.get("/v1/participants", key=spare["secret"]).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at >= before
    listed = api.get(f"/v1/participants/{tenants['merchant'].id}/api_keys", key=spare["secret"])
    row = next(r for r in listed.json()["data"] if r["id"] == spare["id"])
    assert row["last_used_at"] is not None


def test_a_failed_authentication_does_not_touch_last_used_at(api, tenants):
    spare = issue(api, tenants)
    assert (
        api.post(f"/v1/api_keys/{spare['id']}/revoke", {}, key=spare["secret"]).status_code == 200
    )
    ApiKey.objects.filter(pk=spare["id"]).update(last_used_at=None)
    assert api.get("/v1/me", key=spare["secret"]).status_code == 401
    assert ApiKey.objects.get(pk=spare["id"]).last_used_at is None


def test_test_keys_see_none_of_the_live_data(api, tenants):
    merchant = tenants["merchant"]
    live = issue_key(merchant.participant, livemode=True)
    live_endpoint = api.post("/v1/webhook_endpoints", HOOK, key=live)
    assert live_endpoint.status_code == 201
    live_events = api.get("/v1/events", key=live).json()["data"]
    assert [e["type"] for e in live_events] == ["webhook_endpoint.created"]
    live_event = live_events[0]

    test_endpoint = api.post("/v1/webhook_endpoints", HOOK, key=merchant.key)
    assert test_endpoint.status_code == 201

    events = api.get("/v1/events", key=merchant.key).json()["data"]
    assert [e["id"] for e in events] == [Event.objects.get(livemode=False).pk]
    assert all(e["livemode"] is False for e in events)
    assert api.get(f"/v1/events/{live_event['id']}", key=merchant.key).status_code == 404
    endpoints = api.get("/v1/webhook_endpoints", key=merchant.key).json()["data"]
    assert [e["id"] for e in endpoints] == [test_endpoint.json()["id"]]
    assert (
        api.get(f"/v1/webhook_endpoints/{live_endpoint.json()['id']}", key=merchant.key).status_code
        == 404
    )
    keys = api.get(f"/v1/participants/{merchant.id}/api_keys", key=merchant.key).json()["data"]
    assert {k["livemode"] for k in keys} == {False}
    audit = api.get("/v1/audit_entries", key=merchant.key).json()["data"]
    assert {a["livemode"] for a in audit} == {False}
    # And the other way round.
    assert [e["id"] for e in api.get("/v1/events", key=live).json()["data"]] == [live_event["id"]]
    # The test-mode operator does not see live events either.
    operator_events = api.get("/v1/events", key=tenants["operator"].key).json()["data"]
    assert live_event["id"] not in {e["id"] for e in operator_events}


def test_a_test_key_cannot_revoke_or_rotate_a_live_key(api, tenants):
    merchant = tenants["merchant"]
    live = issue_key(merchant.participant, livemode=True)
    live_key = api_key_of(live)
    before = row_counts()
    for key in (merchant.key, tenants["operator"].key):
        for action in ("revoke", "rotate"):
            response = api.post(f"/v1/api_keys/{live_key.pk}/{action}", {}, key=key)
            assert response.status_code == 404
    live_key.refresh_from_db()
    assert (live_key.revoked_at, live_key.replaced_by_id) == (None, None)
    assert row_counts() == before


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic dXNlcjpwYXNz", "invalid_authorization_header"),
        ("Bearer", "invalid_authorization_header"),
        ("Bearer ", "invalid_authorization_header"),
        ("hk_test_abc", "invalid_authorization_header"),
        ("Bearer hk_test_" + "A" * 32, "invalid_api_key"),
        ("Bearer sk_test_" + "A" * 32, "invalid_api_key"),
        ("Bearer hk_test_" + "A" * 200, "invalid_api_key"),
    ],
)
def test_bad_authorization_headers_are_401(api, tenants, header, code):
    response = api.client.get("/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", code)


def test_no_key_is_401(api, tenants):
    response = api.get("/v1/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_missing"


@needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "ok", "conflict"),
    [("rotate", 201, "api_key_rotated"), ("revoke", 200, "api_key_revoked")],
)
def test_concurrent_rotations_or_revocations_of_one_key_succeed_once(tenants, action, ok, conflict):
    merchant = tenants["merchant"]
    target = api_key_of(issue_key(merchant.participant))
    callers = [issue_key(merchant.participant) for _ in range(4)]
    keys_before = ApiKey.objects.count()
    barrier = threading.Barrier(len(callers))
    outcomes: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def send(secret: str) -> None:
        try:
            barrier.wait(timeout=30)
            response = Client().post(
                f"/v1/api_keys/{target.pk}/{action}",
                "{}",
                content_type="application/json",
                headers={"Authorization": f"Bearer {secret}"},
            )
            with lock:
                outcomes.append(
                    (response.status_code, response.json().get("error", {}).get("code"))
                )
        finally:
            connection.close()

    workers = [threading.Thread(target=send, args=(secret,)) for secret in callers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(outcomes, key=str) == [(ok, None)] + [(409, conflict)] * (len(callers) - 1)
    assert ApiKey.objects.count() == keys_before + (1 if action == "rotate" else 0)
    assert Event.objects.filter(type=f"api_key.{action}d").count() == 1


# The per-process cache of authenticated keys (API_KEY_CACHE_SECONDS).


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr("hub.services.api_keys.time.monotonic", lambda: now[0])
    key_cache.clear()
    yield now
    key_cache.clear()


def test_a_cached_key_authenticates_without_a_query(tenants, clock, django_assert_num_queries):
    merchant = tenants["merchant"]
    first = api_key_authenticate(secret=merchant.key)  # reads, caches, records last_used_at
    with django_assert_num_queries(0):
        second = api_key_authenticate(secret=merchant.key)
    assert (second.pk, second.participant.pk, second.scopes) == (
        first.pk,
        merchant.id,
        first.scopes,
    )
    assert second.last_used_at == first.last_used_at
    # Each hit builds its own objects: a request cannot change what another one sees.
    assert second is not first
    assert second.participant is not first.participant
    second.participant.legal_name = "changed by one request"
    assert api_key_authenticate(secret=merchant.key).participant.legal_name != (
        "changed by one request"
    )


def test_the_cache_expires_after_its_ttl(settings, tenants, clock, django_assert_num_queries):
    settings.HUB = {**settings.HUB, "API_KEY_CACHE_SECONDS": 5.0}
    merchant = tenants["merchant"]
    key = api_key_of(merchant.key)
    api_key_authenticate(secret=merchant.key)
    # A change made behind the hub's back (another process) is not seen within the TTL...
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    clock[0] += 4.9
    assert api_key_authenticate(secret=merchant.key).pk == key.pk
    # ...and is seen once it has passed.
    clock[0] += 0.2
    with pytest.raises(errors.AuthenticationFailed):
        api_key_authenticate(secret=merchant.key)


def test_no_cache_when_the_ttl_is_zero(settings, tenants, clock, django_assert_num_queries):
    settings.HUB = {**settings.HUB, "API_KEY_CACHE_SECONDS": 0}
    merchant = tenants["merchant"]
    api_key_authenticate(secret=merchant.key)
    with django_assert_num_queries(1):
        api_key_authenticate(secret=merchant.key)
    ApiKey.objects.filter(pk=api_key_of(merchant.key).pk).update(revoked_at=timezone.now())
    with pytest.raises(errors.AuthenticationFailed):
        api_key_authenticate(secret=merchant.key)


def test_revoking_through_the_api_takes_effect_at_once(api, tenants, clock):
    merchant = tenants["merchant"]
    spare = issue(api, tenants)
    assert api.get("/v1/me", key=spare["secret"]).status_code == 200  # now cached
    assert api.get("/v1/me", key=merchant.key).status_code == 200
    revoked = api.post(f"/v1/api_keys/{spare['id']}/revoke", {}, key=merchant.key)
    assert revoked.status_code == 200
    refused = api.get("/v1/me", key=spare["secret"])
    assert (refused.status_code, error_of(refused)["code"]) == (401, "invalid_api_key")


def test_suspending_a_participant_takes_effect_at_once(api, tenants, clock):
    merchant, operator = tenants["merchant"], tenants["operator"]
    assert api.get("/v1/me", key=merchant.key).status_code == 200  # now cached
    suspended = api.post(
        f"/v1/participants/{merchant.id}", {"status": "suspended"}, key=operator.key
    )
    assert suspended.status_code == 200
    refused = api.get("/v1/me", key=merchant.key)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "participant_inactive")


def test_unknown_keys_are_not_cached(tenants, clock, django_assert_num_queries):
    for _ in range(2):
        with django_assert_num_queries(1), pytest.raises(errors.AuthenticationFailed):
            api_key_authenticate(secret="hk_test_" + "x" * 32)
