"""The hub's knobs, read from ``settings.HUB`` through one object (like DRF's ``api_settings``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


class HubSettings:
    def __getattr__(self, name: str) -> Any:
        try:
            return settings.HUB[name]
        except KeyError:
            raise AttributeError(f"settings.HUB has no {name!r}") from None


hub_settings = HubSettings()
