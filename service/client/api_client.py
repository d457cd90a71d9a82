"""A small HTTP client for the API, used by the CLI's client commands and by report."""

from __future__ import annotations

import os
from typing import Any

import httpx

from service.studies.schemas import (
    CancelResult,
    ComparisonList,
    ComparisonPublic,
    CurvePage,
    Health,
    Importance,
    JsonObject,
    RetrainPublic,
    StudyList,
    StudyPublic,
    TrialCurve,
    TrialList,
    TrialPublic,
)

__all__ = ["ApiClient", "ApiError", "http_client"]


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: Any) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"HTTP {status}: {detail}")


# A kept-alive connection is closed by the server after it has been idle a while (uvicorn: 5 s).
# The client gives one up sooner, so that it does not send on a socket the server is closing; a
# read (GET) that still meets a closed connection is sent once more on a new one. Other methods
# are not resent: the server may have acted on the first.
KEEPALIVE_S = 2.0
RESENT_ERRORS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class ResendingTransport(httpx.HTTPTransport):
    """httpx's transport, with idle connections dropped after ``KEEPALIVE_S`` and a GET that
    meets a connection the server closed sent once more (the dead connection has left the pool)."""

    def __init__(self) -> None:
        super().__init__(limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except RESENT_ERRORS:
            if request.method != "GET":
                raise
            return super().handle_request(request)


def http_client(url: str, headers: dict[str, str], timeout: float) -> httpx.Client:
    """An HTTP client for the API (the CLI's, the benchmarks' and the tests')."""
    return httpx.Client(base_url=url, headers=headers, timeout=timeout,
                        transport=ResendingTransport())


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("SRU_HPO_API_URL") or "http://127.0.0.1:8000").rstrip("/")
        token = token if token is not None else os.environ.get("SRU_HPO_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http_client(self.url, headers, timeout)

    def _do(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.url}: {exc}") from exc
        if 300 <= r.status_code < 400:  # no route redirects: the path was not a study's
            raise ApiError(r.status_code, f"{path} is not an API route (redirected to "
                                          f"{r.headers.get('location')})")
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail)
        if r.status_code == 204:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    # Responses come back as the API's own response models (service/studies/schemas.py), read
    # field by field; a response that does not match one is a ValidationError, not a KeyError later.
    def submit(self, study: JsonObject) -> StudyPublic:
        """``study`` is the file's mapping as read: the API validates it (422 names the field)."""
        return StudyPublic.model_validate(self._do("POST", "/studies", json=study))

    def studies(self) -> list[StudyPublic]:
        return StudyList.model_validate(self._do("GET", "/studies", params={"limit": 1000})).studies

    def resolve(self, sid: str) -> str:
        """A whole study id from a unique prefix of one (``status`` shows short ids)."""
        return self._resolve("studies", "study", sid)

    def _resolve(self, collection: str, noun: str, ident: str) -> str:
        try:
            return self._do("GET", f"/{collection}/{ident}")["id"]
        except ApiError as exc:
            if exc.status != 404:
                raise
            items = self._do("GET", f"/{collection}", params={"limit": 1000})[collection]
            matches = [x["id"] for x in items if x["id"].startswith(ident)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ApiError(404, f"{ident!r} is the start of {len(matches)} {noun} ids; give "
                                    "more of it") from None
            raise

    def trials(self, sid: str) -> list[TrialPublic]:
        out: list[TrialPublic] = []
        while True:
            page = TrialList.model_validate(self._do("GET", f"/studies/{sid}/trials",
                                                     params={"limit": 1000, "offset": len(out)}))
            out += page.trials
            if len(page.trials) < 1000:
                return out

    def trials_csv(self, sid: str) -> str:
        data = self._do("GET", f"/studies/{sid}/trials.csv")
        return data.decode() if isinstance(data, bytes) else data

    def importance(self, sid: str) -> Importance:
        return Importance.model_validate(self._do("GET", f"/studies/{sid}/importance"))

    def study(self, sid: str) -> StudyPublic:
        return StudyPublic.model_validate(self._do("GET", f"/studies/{sid}"))

    def best(self, sid: str, k: int = 5) -> list[TrialPublic]:
        trials = self._do("GET", f"/studies/{sid}/trials/best", params={"k": k})
        return [TrialPublic.model_validate(t) for t in trials]

    def curves(self, sid: str) -> list[TrialCurve]:
        """Every curve of the study, following the cursor page by page."""
        out: dict[int, TrialCurve] = {}
        params: dict[str, int | float] = {"limit": 1000}
        while True:
            page = CurvePage.model_validate(self._do("GET", f"/studies/{sid}/curves", params=params))
            out.update({c.tid: c for c in page.curves})
            if not page.more:
                return [out[t] for t in sorted(out)]
            params["updated_after"] = page.cursor

    def retrain(self, sid: str) -> RetrainPublic:
        return RetrainPublic.model_validate(self._do("GET", f"/studies/{sid}/retrain"))

    def checkpoint(self, sid: str) -> bytes:
        return self._do("GET", f"/studies/{sid}/checkpoint")

    def delete(self, sid: str) -> None:
        self._do("DELETE", f"/studies/{sid}")

    def cancel(self, sid: str) -> CancelResult:
        return CancelResult.model_validate(self._do("POST", f"/studies/{sid}/cancel", json={}))

    # -- comparisons -------------------------------------------------------------------------
    def submit_comparison(self, body: JsonObject) -> ComparisonPublic:
        """``body`` is the file's mapping as read: the API validates it (422 names the field)."""
        return ComparisonPublic.model_validate(self._do("POST", "/comparisons", json=body))

    def comparison(self, cid: str) -> ComparisonPublic:
        return ComparisonPublic.model_validate(self._do("GET", f"/comparisons/{cid}"))

    def comparisons(self) -> list[ComparisonPublic]:
        page = self._do("GET", "/comparisons", params={"limit": 1000})
        return ComparisonList.model_validate(page).comparisons

    def resolve_comparison(self, cid: str) -> str:
        """A whole comparison id from a unique prefix of one."""
        return self._resolve("comparisons", "comparison", cid)

    def cancel_comparison(self, cid: str) -> ComparisonPublic:
        return ComparisonPublic.model_validate(
            self._do("POST", f"/comparisons/{cid}/cancel", json={}))

    def delete_comparison(self, cid: str) -> None:
        self._do("DELETE", f"/comparisons/{cid}")

    def health(self) -> Health:
        return Health.model_validate(self._do("GET", "/healthz"))
