from __future__ import annotations

import itertools

import factory

from hub.models import ApiKey, Participant, Role
from hub.principal import ROLE_SCOPES, Principal
from hub.sandbox import make_brn, make_uscc
from hub.services.api_keys import issue_key_unaudited

_serial = itertools.count(1)


def _registration_id(country: str) -> str:
    n = next(_serial)
    if country == "KR":
        return make_brn(f"{(100000000 + n * 7919) % 1000000000:09d}")
    return make_uscc("371002", f"MA{n:06d}")


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Participant

    role = Role.MERCHANT
    legal_name = factory.Sequence(lambda n: f"Test Company {n} Co., Ltd.")
    country = "CN"
    registration_id = factory.LazyAttribute(lambda o: _registration_id(o.country))
    metadata = factory.LazyFunction(dict)


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    participant = factory.SubFactory(ParticipantFactory)
    livemode = False
    prefix = "hk_test_fake"
    key_hash = factory.Sequence(lambda n: f"{n:064x}")
    scopes = factory.LazyAttribute(lambda o: sorted(ROLE_SCOPES[o.participant.role]))


def make_participant(**fields: object) -> Participant:
    participant: Participant = ParticipantFactory.create(**fields)
    return participant


def issue_key(participant: Participant, *, livemode: bool = False) -> str:
    """A real key for ``participant``: the secret to put in the Authorization header."""
    _, secret = issue_key_unaudited(participant=participant, livemode=livemode, name="test")
    return secret


def principal_for(
    participant: Participant, *, livemode: bool = False, request_id: str = "req_test"
) -> Principal:
    key, _ = issue_key_unaudited(participant=participant, livemode=livemode, name="test")
    return Principal(
        participant=participant,
        api_key=key,
        livemode=livemode,
        scopes=frozenset(key.scopes),
        request_id=request_id,
    )
