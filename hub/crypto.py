"""Secrets the hub must read back (webhook signing secrets, adapter credentials) are encrypted at
rest with Fernet. ``HUB_ENCRYPTION_KEYS`` lists keys newest first: new values are encrypted with
the first, any listed key decrypts, so a key is rotated by prepending a new one, re-encrypting
(``rotate``), then dropping the old one, with no downtime."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    raw = os.environ.get("HUB_ENCRYPTION_KEYS", "")
    if raw:
        keys = [k.strip() for k in raw.split(",") if k.strip()]
    elif settings.PRODUCTION:
        raise ImproperlyConfigured("HUB_ENCRYPTION_KEYS must be set when HUB_ENV=production")
    else:
        digest = hashlib.sha256(("encryption:" + settings.SECRET_KEY).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("HUB_ENCRYPTION_KEYS holds an invalid Fernet key") from exc


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    return _fernet().rotate(token.encode()).decode()


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 under the pepper: how API keys are stored and looked up."""
    return hmac.new(settings.API_KEY_PEPPER.encode(), value.encode(), hashlib.sha256).hexdigest()
