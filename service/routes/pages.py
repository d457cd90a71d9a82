"""The dashboard's pages: static shells that read the REST API from the browser."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[1] / "static"


@router.get("/", response_class=HTMLResponse)
def dashboard() -> str:
    return (STATIC / "dashboard.html").read_text()
