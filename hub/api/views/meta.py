from __future__ import annotations

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hub.api.base import HubAPIView
from hub.api.permissions import ALL_ROLES, Rule
from hub.api.views.participants import ParticipantOut


class HealthView(HubAPIView):
    """Liveness and database reachability, for load balancers; needs no key."""

    access = {"GET": Rule(public=True)}
    authentication_classes = []

    @extend_schema(
        responses=inline_serializer("Health", {"status": serializers.CharField()}),
        operation_id="health",
        auth=[],
    )
    def get(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"status": "ok"})


class MeView(HubAPIView):
    """The caller: its participant, its key's mode and scopes."""

    access = {"GET": Rule(ALL_ROLES)}

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "object": serializers.CharField(),
                "participant": ParticipantOut(),
                "api_key": serializers.CharField(),
                "livemode": serializers.BooleanField(),
                "scopes": serializers.ListField(child=serializers.CharField()),
            },
        ),
        operation_id="me",
    )
    def get(self, request: Request) -> Response:
        actor = self.actor
        return Response(
            {
                "object": "me",
                "participant": ParticipantOut(actor.participant).data,
                "api_key": actor.api_key.pk if actor.api_key else None,
                "livemode": actor.livemode,
                "scopes": sorted(actor.scopes),
            }
        )
