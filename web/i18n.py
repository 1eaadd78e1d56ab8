"""Page translations: gettext catalogues kept as .po text, compiled in memory at start-up."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import jinja2
from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

# The first locale is the default: the pages are for Chinese village party branches.
DEFAULT_LOCALE = "zh_CN"
LOCALES: tuple[str, ...] = ("zh_CN", "en")

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = _HERE / "templates"
LOCALE_DIR = _HERE / "locale"

# What a `lang` attribute and a `?lang=` link spell for each locale.
HTML_LANG: Mapping[str, str] = {"zh_CN": "zh-CN", "en": "en"}


def load_translations(locale_dir: Path = LOCALE_DIR) -> dict[str, Translations]:
    """Compile `<locale>/LC_MESSAGES/messages.po` for every supported locale.

    The repository holds no binary .mo files, so each catalogue is read as text and
    written to an in-memory .mo that `Translations` parses. Untranslated (empty) and
    fuzzy entries are left out, so gettext falls back to the English msgid.
    """
    translations: dict[str, Translations] = {}
    for locale in LOCALES:
        po_path = locale_dir / locale / "LC_MESSAGES" / "messages.po"
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=locale, domain="messages")
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        translations[locale] = Translations(fp=buffer, domain="messages")
    return translations


def make_jinja_env(translations: Translations | None = None) -> jinja2.Environment:
    """An autoescaping Environment over web/templates with gettext installed.

    Installing translations mutates the Environment's globals, so a server builds one
    Environment per locale at start-up (`make_jinja_envs`) instead of switching one
    shared Environment per request, which would race between concurrent requests.
    Without `translations` the msgids (English) are rendered as they are.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly in tests
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if translations is None:
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    else:
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


def make_jinja_envs(
    translations: Mapping[str, Translations] | None = None,
) -> dict[str, jinja2.Environment]:
    """One Environment per supported locale, keyed like `LOCALES`."""
    if translations is None:
        translations = load_translations()
    return {locale: make_jinja_env(translations[locale]) for locale in LOCALES}


def normalize_locale(value: str) -> str | None:
    """Map `en`, `en-US`, `zh`, `zh-CN`, `zh_cn`, `zh-Hans` ... to a supported locale, else None."""
    tag = value.strip().replace("-", "_").lower()
    if not tag:
        return None
    primary = tag.split("_", 1)[0]
    if primary == "en":
        return "en"
    if primary == "zh":
        return "zh_CN"
    return None


def pick_locale(request: web.Request) -> str:
    """`?lang=en|zh_CN` wins; otherwise Simplified Chinese.

    The browser's Accept-Language is not consulted: kiosk TVs and bought-abroad phones often
    say en-US while everyone in the room reads Chinese. English is one click away (the
    language link keeps the token).
    """
    asked = normalize_locale(request.query.get("lang", ""))
    return asked if asked is not None else DEFAULT_LOCALE
