"""The security headers of every ``/ui/`` answer.

Names in the console come from users (a cell called ``<img onerror=...>`` is legal YAML
and a valid label is not the only place text comes from): the page renders everything as
text, and the Content-Security-Policy makes sure that a slip would still run nothing — no
markup from a string at all (Trusted Types, none allowed), no inline script or style, no
``eval``, scripts, styles and requests to this origin only, no
framing (clickjacking), no ``<base>`` rewriting, no form posted elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        # No string ever becomes HTML or script (innerHTML, insertAdjacentHTML,
        # document.write, a script's src or text): the page builds nodes only, so a slip
        # that would insert a tenant's text as markup throws instead.
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
}

SHELL_CACHE = "no-store"
"""The page itself is never kept by the browser or a proxy."""
ASSET_CACHE = "no-cache"
"""Static files may be kept but are revalidated (an upgraded kukeond serves new ones)."""


def ui_headers(*, cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}
