"""An independent reading of the Standard Webhooks signature scheme, written from the spec for the
tests to check the hub's deliveries with (it shares no code with ``hub.webhook_signature``):

- the key is the base64-decoded part of the secret after ``whsec_``;
- the signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``;
- the signature is base64(HMAC-SHA256(key, content)), sent as ``v1,<signature>`` in
  ``webhook-signature``, several separated by spaces while a rotated secret is still valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def expected_signature(*, secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The bare base64 signature (without ``v1,``)."""
    assert secret.startswith("whsec_"), secret
    key = base64.b64decode(secret[len("whsec_") :])
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signatures_of(headers: Mapping[str, str]) -> list[str]:
    """The bare signatures of a ``webhook-signature`` header, each checked to be ``v1,<b64>``."""
    result = []
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        assert version == "v1", entry
        assert len(base64.b64decode(signature, validate=True)) == 32, entry
        result.append(signature)
    return result


def matching_signatures(*, secret: str, headers: Mapping[str, str], body: bytes) -> int:
    """How many of the header's signatures were made with ``secret`` over this exact body."""
    want = expected_signature(
        secret=secret,
        msg_id=headers["webhook-id"],
        timestamp=headers["webhook-timestamp"],
        body=body,
    )
    return sum(hmac.compare_digest(want, got) for got in signatures_of(headers))
