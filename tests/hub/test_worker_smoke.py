import pytest

from hub.webhook_signature import verify


@pytest.mark.worker
def test_worker_delivers(api, tenants, receiver, celery_worker):
    op = tenants["operator"]
    r = api.post(
        "/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["*"]}, key=op.key
    )
    assert r.status_code == 201, r.content
    secret = r.json()["secret"]
    r = api.post(f"/v1/participants/{op.id}", {"metadata": {"a": "b"}}, key=op.key)
    assert r.status_code == 200, r.content
    got = receiver.wait_for(1)
    verify(secret=secret, headers=got[0].headers, body=got[0].body)
