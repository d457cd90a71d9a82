"""The dashboard's pages: a static shell and its assets, reading the REST API from the browser.

Nothing here holds data, so these are open even when ``SRU_HPO_READ_TOKEN`` is set; the page asks
for the token and sends it with every data request. plotly.js is served from the plotly wheel
(``plotly/package_data/plotly.min.js``), so the dashboard works with no network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[1] / "static"


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/", response_class=HTMLResponse)
def dashboard() -> str:
    return (STATIC / "dashboard.html").read_text()


@router.get("/static/plotly.min.js")
def plotly_asset() -> FileResponse:
    return FileResponse(plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "max-age=86400"})


assets = StaticFiles(directory=STATIC)
