"""Errors of the catalogue."""

from __future__ import annotations

from mvne.infra.errors import Conflict, InvalidInput, NotFound


class OfferNotFound(NotFound):
    code = "offer_not_found"


class OfferCodeTaken(Conflict):
    code = "offer_code_taken"


class OfferNotPublishable(Conflict):
    code = "offer_not_publishable"


class OfferNotPublished(Conflict):
    code = "offer_not_published"


class OfferRetired(Conflict):
    code = "offer_retired"


class OfferVersionNotFound(NotFound):
    code = "offer_version_not_found"


class VersionImmutable(Conflict):
    code = "version_immutable"


class VersionDatesOverlap(Conflict):
    code = "version_dates_overlap"


class VersionEffectiveInPast(InvalidInput):
    code = "version_effective_in_past"


class VersionDateRequired(InvalidInput):
    code = "version_date_required"


class RateCardUnknown(InvalidInput):
    code = "rate_card_not_found"


class InvalidAllowance(InvalidInput):
    code = "invalid_allowance"


class InvalidOfferTerms(InvalidInput):
    code = "invalid_offer_terms"


class OfferKindMismatch(Conflict):
    code = "offer_kind_mismatch"


class PromotionNotFound(NotFound):
    code = "promotion_not_found"


class PromotionCodeTaken(Conflict):
    code = "promotion_code_taken"


class PromotionUnknown(InvalidInput):
    code = "promotion_unknown"


class PromotionExhausted(InvalidInput):
    code = "promotion_exhausted"


class PromotionExpired(InvalidInput):
    code = "promotion_expired"


class PromotionNotApplicable(InvalidInput):
    code = "promotion_not_applicable"


class InvalidPromotion(InvalidInput):
    code = "invalid_promotion"
