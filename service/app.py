"""The FastAPI application: where an HTTP request is handled.

Routes read and write MongoDB through ``trials.store.JobStore`` and the ``studies`` collection;
the study drivers (service/driver.py) run as asyncio tasks started in the lifespan. Write
endpoints need ``Authorization: Bearer <SRU_HPO_API_TOKEN>`` when that token is set.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse

from service.driver import DriverManager, StudyDriver
from service.embedded_db import EmbeddedMongo
from service.schemas import (
    CancelResult,
    Health,
    RetrainPublic,
    StudyCreate,
    StudyList,
    StudyPublic,
    TrialCurve,
    TrialList,
    TrialPublic,
    WorkerPublic,
)
from service.views import study_public, trial_public
from trials.connection import connect, redact
from trials.settings import Settings
from trials.states import JobKind, JobState
from trials.store import JobStore

__all__ = ["create_app"]

log = logging.getLogger("sru_hpo.api")


class Runtime:
    """What the lifespan builds: settings, the database, the store, the drivers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedMongo | None = None
        url = settings.mongo_url
        if not url:
            self.embedded = EmbeddedMongo(settings.home / "db").start()
            url = self.embedded.url
            log.info("embedded database at %s (data in %s)", url, settings.home / "db")
        self.url = url
        self.db = connect(url, settings.db_name, timeout=settings.connect_timeout)
        self.store = JobStore(self.db, heartbeat_interval=settings.heartbeat_interval,
                              max_retries=settings.max_retries)
        self.store.ensure_indexes()
        self.studies = self.db["studies"]
        self.driver = StudyDriver(self.store, self.studies,
                                  lease_seconds=max(5.0, 10 * settings.driver_poll))
        self.manager = DriverManager(self.driver, settings.driver_poll)

    def close(self) -> None:
        self.db.client.close()
        if self.embedded is not None:
            self.embedded.stop()


def runtime(request: Request) -> Runtime:
    return request.app.state.rt


def require_token(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """Write endpoints: 401 unless ``Authorization: Bearer <SRU_HPO_API_TOKEN>`` (when set)."""
    token = request.app.state.settings.api_token
    if not token:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


Rt = Annotated[Runtime, Depends(runtime)]
Writer = Annotated[None, Depends(require_token)]
States = Literal["new", "running", "done", "error", "cancelled"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await asyncio.to_thread(Runtime, settings)
        app.state.rt = rt
        await rt.manager.resume_all()
        yield
        await rt.manager.stop()
        await asyncio.to_thread(rt.close)

    # max_body_size: FastAPI/Starlette answer 413 past the limit (Content-Length or streamed).
    app = FastAPI(title="sru-hpo", version="0.1.0", lifespan=lifespan,
                  max_body_size=settings.max_body_bytes,
                  description="Hyperparameter optimization for the Statistical Recurrent Unit")
    app.state.settings = settings

    def get_study(rt: Runtime, sid: str) -> dict[str, Any]:
        doc = rt.studies.find_one({"_id": sid})
        if doc is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"study {sid!r} not found")
        return doc

    # -- studies ----------------------------------------------------------------------------------
    @app.post("/studies", response_model=StudyPublic, status_code=201, tags=["studies"])
    def create_study(body: StudyCreate, rt: Rt, _: Writer) -> StudyPublic:
        if body.n_trials > settings.max_trials:
            raise HTTPException(422, f"n_trials: at most {settings.max_trials} (SRU_HPO_MAX_TRIALS)")
        sid = uuid.uuid4().hex[:12]
        doc = {"_id": sid, **body.model_dump(), "state": "queued", "created": time.time(),
               "started": None, "search_finished": None, "finished": None, "error": None}
        rt.studies.insert_one(doc)
        rt.manager.start(sid)
        return study_public(rt.store, doc)

    @app.get("/studies", response_model=StudyList, tags=["studies"])
    def list_studies(rt: Rt, state: str | None = None) -> StudyList:
        q = {"state": state} if state else {}
        docs = sorted(rt.studies.find(q), key=lambda d: d["created"], reverse=True)
        return StudyList(studies=[study_public(rt.store, d) for d in docs])

    @app.get("/studies/{sid}", response_model=StudyPublic, tags=["studies"])
    def read_study(sid: str, rt: Rt) -> StudyPublic:
        return study_public(rt.store, get_study(rt, sid))

    @app.post("/studies/{sid}/cancel", response_model=CancelResult, tags=["studies"])
    def cancel_study(sid: str, rt: Rt, _: Writer) -> CancelResult:
        doc = get_study(rt, sid)
        if doc["state"] in ("completed", "cancelled", "failed"):
            raise HTTPException(409, f"study {sid!r} is already {doc['state']}")
        rt.studies.update_one({"_id": sid}, {"$set": {"state": "cancelled",
                                                      "finished": time.time()}})
        queued, running = rt.store.cancel(sid)
        return CancelResult(id=sid, state="cancelled", queued_cancelled=queued,
                            running_stopping=running)

    @app.delete("/studies/{sid}", status_code=204, tags=["studies"])
    def delete_study(sid: str, rt: Rt, _: Writer) -> Response:
        get_study(rt, sid)
        rt.studies.update_one({"_id": sid}, {"$set": {"state": "cancelled"}})
        rt.store.cancel(sid)
        rt.store.delete(sid)
        rt.studies.delete_one({"_id": sid})
        return Response(status_code=204)

    # -- trials -----------------------------------------------------------------------------------
    @app.get("/studies/{sid}/trials", response_model=TrialList, tags=["trials"])
    def list_trials(
        sid: str, rt: Rt, state: States | None = None,
        sort: Literal["tid", "val_acc"] = "tid",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> TrialList:
        get_study(rt, sid)
        q: dict[str, Any] = {"exp_key": sid, "kind": JobKind.TRIAL.value}
        if state:
            q["state"] = int(JobState[state.upper()])
        docs = list(rt.store.jobs.find(q))
        if sort == "val_acc":
            docs.sort(key=lambda d: (-(d.get("result", {}).get("best_val_acc") or -1), d["tid"]))
        else:
            docs.sort(key=lambda d: d["tid"])
        page = docs[offset: offset + limit]
        return TrialList(total=len(docs), offset=offset, limit=limit,
                         trials=[trial_public(d) for d in page])

    @app.get("/studies/{sid}/trials/best", response_model=list[TrialPublic], tags=["trials"])
    def best_trials(sid: str, rt: Rt, k: Annotated[int, Query(ge=1, le=1000)] = 5
                    ) -> list[TrialPublic]:
        get_study(rt, sid)
        return [trial_public(d) for d in rt.store.best_trials(sid, k)]

    @app.get("/studies/{sid}/trials/{tid}", response_model=TrialPublic, tags=["trials"])
    def read_trial(sid: str, tid: int, rt: Rt) -> TrialPublic:
        get_study(rt, sid)
        doc = rt.store.jobs.find_one({"exp_key": sid, "tid": tid})
        if doc is None:
            raise HTTPException(404, f"trial {tid} of study {sid!r} not found")
        return trial_public(doc, curve=rt.store.curve(sid, tid))

    @app.get("/studies/{sid}/curves", response_model=list[TrialCurve], tags=["trials"])
    def curves(sid: str, rt: Rt) -> list[TrialCurve]:
        get_study(rt, sid)
        by_tid = rt.store.study_curves(sid)
        out = []
        for d in sorted(rt.store.jobs.find({"exp_key": sid}), key=lambda d: d["tid"]):
            out.append(TrialCurve(tid=d["tid"], kind=d.get("kind", "trial"),
                                  state=JobState(d["state"]).label, outcome=d.get("outcome"),
                                  points=by_tid.get(d["tid"], [])))
        return out

    @app.get("/studies/{sid}/retrain", response_model=RetrainPublic, tags=["results"])
    def retrain(sid: str, rt: Rt) -> RetrainPublic:
        study = get_study(rt, sid)
        job = rt.store.jobs.find_one({"exp_key": sid, "kind": JobKind.RETRAIN.value})
        if job is None:
            return RetrainPublic(state="pending", epochs=study["retrain_epochs"])
        res = job.get("result") or {}
        return RetrainPublic(
            state=JobState(job["state"]).label, tid=job["tid"], params=job["params"],
            epochs=job["epochs"], best_val_acc=res.get("best_val_acc"),
            best_epoch=res.get("best_epoch"), test_acc=res.get("test_acc"),
            test_loss=res.get("test_loss"), checkpoint=bool(res.get("checkpoint_bytes")),
            curve=rt.store.curve(sid, job["tid"]),
        )

    @app.get("/studies/{sid}/checkpoint", tags=["results"],
             response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
    def checkpoint(sid: str, rt: Rt) -> Response:
        get_study(rt, sid)
        data = rt.store.load_checkpoint(sid)
        if data is None:
            raise HTTPException(404, f"study {sid!r} has no retrained checkpoint yet")
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{sid}.pt"'})

    # -- operations -------------------------------------------------------------------------------
    @app.get("/workers", response_model=list[WorkerPublic], tags=["operations"])
    def workers(rt: Rt) -> list[WorkerPublic]:
        return [WorkerPublic(id=w["_id"], **{k: v for k, v in w.items() if k != "_id"})
                for w in rt.store.live_workers()]

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz(rt: Rt) -> Health:
        try:
            rt.db.command("ping")
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"database unreachable: {exc}") from exc
        return Health(status="ok", database=redact(rt.url), studies_driven=rt.manager.active)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics(rt: Rt) -> str:
        # Prometheus text format written out: every value is one count query per scrape, so
        # a client-library registry would add a dependency and no behaviour.
        lines = ["# HELP sru_hpo_jobs Jobs by state (all studies).", "# TYPE sru_hpo_jobs gauge"]
        for s in JobState:
            n = rt.store.jobs.count_documents({"state": int(s)})
            lines.append(f'sru_hpo_jobs{{state="{s.label}"}} {n}')
        lines += ["# HELP sru_hpo_queue_depth Jobs waiting for a worker.",
                  "# TYPE sru_hpo_queue_depth gauge",
                  f"sru_hpo_queue_depth {rt.store.jobs.count_documents({'state': 0})}",
                  "# HELP sru_hpo_workers Live workers.", "# TYPE sru_hpo_workers gauge",
                  f"sru_hpo_workers {len(rt.store.live_workers())}",
                  "# HELP sru_hpo_studies Studies by state.", "# TYPE sru_hpo_studies gauge"]
        for st in ("queued", "running", "retraining", "completed", "cancelled", "failed"):
            lines.append(f'sru_hpo_studies{{state="{st}"}} '
                         f'{rt.studies.count_documents({"state": st})}')
        return "\n".join(lines) + "\n"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (Path(__file__).parent / "static" / "dashboard.html").read_text()

    return app
