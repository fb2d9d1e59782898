"""Errors of the catalogue."""

from __future__ import annotations

from mvne.infra.errors import Conflict, NotFound


class OfferNotFound(NotFound):
    code = "offer_not_found"


class OfferCodeTaken(Conflict):
    code = "offer_code_taken"


class OfferNotPublishable(Conflict):
    code = "offer_not_publishable"


class OfferNotPublished(Conflict):
    code = "offer_not_published"
