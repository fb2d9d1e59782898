"""The words of the subscribers' sign-in page, in each language it speaks.

The page speaks the tenant's languages (its market's, first the default), choosing among them by the
browser's `Accept-Language`; a language we have no words for falls back to the next, then to English.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from werkzeug.datastructures import LanguageAccept

DEFAULT = "en"

TEXT: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title_sign_in": "Sign in",
        "title_allow": "Allow {app}",
        "title_problem": "Sign-in problem",
        "cannot_sign_in": "We could not sign you in",
        "sign_in_to": "Sign in to {app}",
        "email_label": "E-mail address",
        "continue": "Continue",
        "password_label": "Password",
        "sign_in": "Sign in",
        "no_password": "No password, or forgot it?",
        "email_me_a_code": "E-mail me a sign-in code",
        "another_email": "Use another e-mail address",
        "enter_code": "Enter your code",
        "code_label": "Six-digit code from the e-mail",
        "send_another_code": "Send another code",
        "allow_question": "Allow {app}?",
        "signed_in_as": "Signed in as {email}",
        "allow": "Allow",
        "deny": "Deny",
        "need_help": "Need help?",
        "support": "Support",
        "invalid_email": "Enter the e-mail address your account uses.",
        "code_sent": "If {email} belongs to an account, a six-digit code is on its way. It works for 10 minutes.",
        "wrong_code": "That code is not right, or it has expired.",
        "wrong_password": "Wrong e-mail or password.",
        "locked_until": "Too many wrong attempts: for your safety, sign-in is paused. Try again after {time} UTC.",
        "locked": "Too many wrong attempts: for your safety, sign-in is paused. Try again later.",
        "wants_to": "{app} wants to {what}",
        "wants_identity": "{app} wants to know who you are",
        "and": " and ",
        "scope_me_read": "read your lines, usage and invoices",
        "scope_me_write": "change your account, such as your password",
    },
    "fr": {
        "title_sign_in": "Connexion",
        "title_allow": "Autoriser {app}",
        "title_problem": "Problème de connexion",
        "cannot_sign_in": "Nous n'avons pas pu vous connecter",
        "sign_in_to": "Connexion à {app}",
        "email_label": "Adresse e-mail",
        "continue": "Continuer",
        "password_label": "Mot de passe",
        "sign_in": "Se connecter",
        "no_password": "Pas de mot de passe, ou oublié ?",
        "email_me_a_code": "Recevoir un code par e-mail",
        "another_email": "Utiliser une autre adresse e-mail",
        "enter_code": "Saisissez votre code",
        "code_label": "Code à six chiffres reçu par e-mail",
        "send_another_code": "Envoyer un autre code",
        "allow_question": "Autoriser {app} ?",
        "signed_in_as": "Connecté en tant que {email}",
        "allow": "Autoriser",
        "deny": "Refuser",
        "need_help": "Besoin d'aide ?",
        "support": "Assistance",
        "invalid_email": "Saisissez l'adresse e-mail de votre compte.",
        "code_sent": "Si {email} correspond à un compte, un code à six chiffres vous a été envoyé. "
        "Il est valable 10 minutes.",
        "wrong_code": "Ce code n'est pas le bon, ou il a expiré.",
        "wrong_password": "Adresse e-mail ou mot de passe incorrect.",
        "locked_until": "Trop d'essais infructueux : par sécurité, la connexion est suspendue. "
        "Réessayez après {time} UTC.",
        "locked": "Trop d'essais infructueux : par sécurité, la connexion est suspendue. Réessayez plus tard.",
        "wants_to": "{app} souhaite {what}",
        "wants_identity": "{app} souhaite savoir qui vous êtes",
        "and": " et ",
        "scope_me_read": "consulter vos lignes, votre consommation et vos factures",
        "scope_me_write": "modifier votre compte, par exemple votre mot de passe",
    },
}


def page_language(tenant_languages: Iterable[str], accept: LanguageAccept | None = None) -> str:
    """The language to speak: the browser's favourite among the tenant's, else the tenant's first we have words
    for, else English. Tags are compared by their language alone (`fr-FR` speaks `fr`)."""
    offered = [tag.split("-")[0].lower() for tag in tenant_languages]
    spoken = [lang for lang in dict.fromkeys(offered) if lang in TEXT]
    if not spoken:
        return DEFAULT
    # The browser's languages by its preference (werkzeug keeps them sorted by quality), by primary subtag.
    for value, quality in accept or ():
        lang = value.split("-")[0].lower()
        if quality > 0 and lang in spoken:
            return lang
    return spoken[0]


def words(lang: str) -> Mapping[str, str]:
    return TEXT.get(lang, TEXT[DEFAULT])
