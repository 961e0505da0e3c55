"""Building blocks every endpoint's serializers use: strict input, money, metadata, ids, times."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from hub import errors
from hub.conf import hub_settings
from hub.money import check_currency, money_payload, parse_amount

# The JSON type each kind of input field takes. DRF alone would coerce 5 into "5" and "60" into
# 60; a strict API refuses the wrong type instead of guessing.
_JSON_TYPES: tuple[tuple[type[serializers.Field], type, str], ...] = (
    (serializers.BooleanField, bool, "a boolean"),
    (serializers.IntegerField, int, "an integer"),
    (serializers.CharField, str, "a string"),
    (serializers.ChoiceField, str, "a string"),
    (serializers.ListField, list, "a list"),
    (serializers.DictField, dict, "an object"),
)


def _check_json_type(field: serializers.Field, value: Any, param: str) -> None:
    if value is None:
        return  # DRF answers null against allow_null itself
    for kind, expected, name in _JSON_TYPES:
        if isinstance(field, kind):
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise errors.InvalidRequest(
                    f"{param} must be {name}.", code="parameter_invalid", param=param
                )
            break
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_type(field.child, item, f"{param}.{index}")


class StrictSerializer(serializers.Serializer):
    """Input serializer that refuses fields it does not know, so a typo is an error, not a no-op,
    and values of the wrong JSON type."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every view calls its input serializer ``Input``: name the schema component after the
        # view (``ParticipantListView.Input`` -> ``ParticipantListInput``) so that the OpenAPI
        # components do not collide.
        outer = [part for part in cls.__qualname__.split(".")[:-1] if part != "<locals>"]
        if outer:
            extend_schema_serializer(component_name=outer[-1].removesuffix("View") + cls.__name__)(
                cls
            )

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise errors.InvalidRequest("Expected a JSON object.", code="parameter_invalid")
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise errors.InvalidRequest(
                f"Unknown parameter: {unknown[0]}.", code="parameter_unknown", param=unknown[0]
            )
        for name, field in self.fields.items():
            if name in data and not field.read_only:
                _check_json_type(field, data[name], name)
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "object",
        "properties": {
            "amount": {"type": "string", "example": "1234.50"},
            "currency": {"type": "string", "example": "CNY"},
        },
        "required": ["amount", "currency"],
    }
)
class MoneyField(serializers.Field):
    """``{"amount": "1234.50", "currency": "CNY"}`` <-> ``(minor_units, currency)``."""

    def __init__(self, *, allow_zero: bool = False, allow_negative: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> tuple[int, str]:
        name = self.field_name or "amount"
        if not isinstance(data, Mapping) or set(data) != {"amount", "currency"}:
            raise errors.InvalidRequest(
                'Money is {"amount": "<decimal string>", "currency": "<ISO 4217>"}.',
                code="parameter_invalid",
                param=name,
            )
        currency = check_currency(data["currency"], param=f"{name}.currency")
        minor = parse_amount(
            data["amount"],
            currency,
            param=f"{name}.amount",
            allow_zero=self.allow_zero,
            allow_negative=self.allow_negative,
        )
        return minor, currency

    def to_representation(self, value: tuple[int, str]) -> dict[str, str]:
        minor, currency = value
        return money_payload(minor, currency)


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class MetadataField(serializers.Field):
    """A bounded map of string keys to string values, for the caller's own references."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        name = self.field_name or "metadata"
        if not isinstance(data, Mapping):
            raise errors.InvalidRequest(
                "metadata must be an object.", code="parameter_invalid", param=name
            )
        if len(data) > hub_settings.METADATA_MAX_KEYS:
            raise errors.InvalidRequest(
                f"metadata has at most {hub_settings.METADATA_MAX_KEYS} keys.",
                code="metadata_too_large",
                param=name,
            )
        for key, value in data.items():
            # NUL: PostgreSQL cannot store it in text or jsonb.
            if not key or len(key) > hub_settings.METADATA_MAX_KEY_LENGTH or "\x00" in key:
                raise errors.InvalidRequest(
                    f"metadata keys have 1 to {hub_settings.METADATA_MAX_KEY_LENGTH} characters, "
                    "none of them NUL.",
                    code="metadata_invalid",
                    param=f"{name}.{key}",
                )
            if (
                not isinstance(value, str)
                or len(value) > hub_settings.METADATA_MAX_VALUE_LENGTH
                or "\x00" in value
            ):
                raise errors.InvalidRequest(
                    f"metadata values are strings of at most "
                    f"{hub_settings.METADATA_MAX_VALUE_LENGTH} characters, none of them NUL.",
                    code="metadata_invalid",
                    param=f"{name}.{key}",
                )
        return dict(data)

    def to_representation(self, value: Any) -> Any:
        return value


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the API shows every ``*_at``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TimestampField(serializers.DateTimeField):
    """ISO 8601 in UTC with a Z, for every ``*_at`` the API shows."""

    def to_representation(self, value: datetime | None) -> str | None:  # type: ignore[override]
        return timestamp(value)


@extend_schema_field(OpenApiTypes.STR)
class ObjectTypeField(serializers.Field):
    """The constant ``object`` member every API object carries."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.object_name = name
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return self.object_name


class RecordOut(serializers.Serializer):
    """An output serializer for model instances, rendered from a plan built once per class.

    The declared fields stay the API's schema; rendering skips DRF's per-object machinery
    (field iteration, ``SkipField``, ordered dicts), which is most of a list response's cost.
    Sources are attribute paths (``"participant_id"``) or ``"*"``; a ``None`` value renders as
    ``null`` without calling the field, as DRF does."""

    _plans: dict[type, list[tuple[str, tuple[str, ...], Any]]] = {}

    def to_representation(self, instance: Any) -> dict[str, Any]:
        plan = self._plans.get(type(self))
        if plan is None:
            plan = [
                (name, tuple(field.source_attrs), field.to_representation)
                for name, field in self.fields.items()
                if not field.write_only
            ]
            self._plans[type(self)] = plan
        out: dict[str, Any] = {}
        for name, attrs, render in plan:
            value = instance
            for attr in attrs:
                value = getattr(value, attr)
            out[name] = None if value is None else render(value)
        return out
