"""``GET /``: a small page to try the voices (plain HTML and JavaScript, no external resources).

Type text, pick a voice, format and speed, then play or download the answer; with "word
timings" on, the page asks ``/v1/audio/captioned_speech`` and highlights each word as it is
spoken. A field takes the API key (``TAILOR_API_KEY``), sent as ``Authorization: Bearer``; the
page itself needs none. Its Content-Security-Policy allows nothing from other origins.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse

PAGE_ROUTE = "/"
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'")


@cache
def page_html() -> str:
    return resources.files("runtime.http").joinpath("static/index.html").read_text(encoding="utf-8")


def add_page(app: FastAPI) -> None:
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                                                  "X-Content-Type-Options": "nosniff"})

    async def ui() -> RedirectResponse:
        return RedirectResponse(PAGE_ROUTE)

    app.add_api_route(PAGE_ROUTE, page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui", ui, methods=["GET"], include_in_schema=False)
