"""Trade documents as the caller may see them: a merchant its own, the operator every merchant's
(of the key's mode); anyone else none. Another's document is answered as missing."""

from __future__ import annotations

from django.db.models import QuerySet

from hub import errors
from hub.principal import Principal
from trade.models import DocumentUpload, _Document
from trade.rules import KINDS


def documents_visible(*, actor: Principal, kind: str) -> QuerySet[_Document]:
    queryset: QuerySet[_Document] = KINDS[kind].model._default_manager.filter(
        livemode=actor.livemode
    )
    return queryset if actor.is_operator else queryset.filter(merchant=actor.participant)


def document_get(*, actor: Principal, kind: str, document_id: str) -> _Document:
    document = documents_visible(actor=actor, kind=kind).filter(pk=document_id).first()
    if document is None:
        raise errors.NotFound()
    return document


def uploads_visible(*, actor: Principal) -> QuerySet[DocumentUpload]:
    queryset = DocumentUpload.objects.filter(livemode=actor.livemode)
    return queryset if actor.is_operator else queryset.filter(merchant=actor.participant)


def upload_get(*, actor: Principal, upload_id: str) -> DocumentUpload:
    upload = uploads_visible(actor=actor).filter(pk=upload_id).first()
    if upload is None:
        raise errors.NotFound()
    return upload
