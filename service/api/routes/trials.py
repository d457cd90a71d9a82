"""``/studies/{id}/trials`` and ``/studies/{id}/curves``: paged, sorted and cut by the database."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from service.api.errors import responses
from service.api.routes.deps import Rt, StudyId, TrialId, get_study
from service.api.security import Reader
from service.studies.schemas import CurvePage, TrialCurve, TrialList, TrialPublic
from service.studies.views import trial_public
from trials.jobs import job_id
from trials.states import JobKind, JobState

router = APIRouter(prefix="/studies/{sid}", tags=["trials"])
States = Literal["new", "running", "done", "error", "cancelled"]


@router.get("/trials", response_model=TrialList, responses=responses(401, 404))
def list_trials(
    sid: StudyId, rt: Rt, _: Reader, state: States | None = None,
    sort: Literal["tid", "val_acc"] = "tid",
    offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrialList:
    study = get_study(rt, sid)
    st = JobState[state.upper()] if state else None
    jobs = rt.store.job_reads.page(sid, state=st, kind=JobKind.TRIAL.value,
                                   by_score=sort == "val_acc", offset=offset, limit=limit)
    counts = study.summary.get("counts") or {}
    total = counts.get(state, 0) if state else sum(counts.get(s.label, 0) for s in JobState)
    return TrialList(total=max(total, offset + len(jobs)), offset=offset, limit=limit,
                     trials=[trial_public(j) for j in jobs])


@router.get("/trials/best", response_model=list[TrialPublic], responses=responses(401, 404))
def best_trials(sid: StudyId, rt: Rt, _: Reader,
                k: Annotated[int, Query(ge=1, le=1000)] = 5) -> list[TrialPublic]:
    get_study(rt, sid)
    return [trial_public(j) for j in rt.store.job_reads.best(sid, k)]


@router.get("/trials/{tid}", response_model=TrialPublic, responses=responses(401, 404))
def read_trial(sid: StudyId, tid: TrialId, rt: Rt, _: Reader) -> TrialPublic:
    get_study(rt, sid)
    job = rt.store.job_reads.get(sid, tid)
    if job is None:
        raise HTTPException(404, f"trial {tid} of study {sid!r} not found")
    return trial_public(job, curve=rt.store.curves.get(job.id))


@router.get("/curves", response_model=CurvePage, responses=responses(401, 404))
def curves(
    sid: StudyId, rt: Rt, _: Reader,
    tids: Annotated[str | None, Query(max_length=10_000, pattern=r"^\d{1,10}(,\d{1,10})*$",
                                      description="comma-separated trial ids")] = None,
    since_epoch: Annotated[int, Query(ge=0, le=10**6, description="only later points")] = 0,
    updated_after: Annotated[float | None, Query(
        allow_inf_nan=False, description="a cursor from an earlier answer: only curves that "
        "changed since")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> CurvePage:
    """Learning curves of the study's trials (and retrain), oldest change first. Poll with the
    returned ``cursor`` as ``updated_after`` to get only what changed."""
    get_study(rt, sid)
    if tids is not None:
        found = rt.store.curves.of_ids([job_id(sid, int(t)) for t in tids.split(",")][:limit])
    else:
        found = rt.store.curves.changed(sid, -1.0 if updated_after is None else updated_after,
                                        limit)
    jobs = {j.id: j for j in rt.store.job_reads.by_ids([c.id for c in found])}
    out = []
    for c in found:
        j = jobs.get(c.id)
        if j is None:
            continue
        out.append(TrialCurve(tid=j.tid, kind=j.kind.value, state=j.state.label,
                              outcome=j.outcome and j.outcome.value,
                              points=c.points(since_epoch)))
    cursor = max((c.updated for c in found), default=updated_after or 0.0)
    return CurvePage(cursor=cursor, more=tids is None and len(found) >= limit,
                     curves=sorted(out, key=lambda c: c.tid))
