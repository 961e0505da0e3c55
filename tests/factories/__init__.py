from tests.factories.core import (
    ApiKeyFactory,
    ParticipantFactory,
    issue_key,
    make_participant,
    principal_for,
)

__all__ = ["ApiKeyFactory", "ParticipantFactory", "issue_key", "make_participant", "principal_for"]
