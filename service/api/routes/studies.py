"""``/studies``: create, list, read, cancel, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from service.api.errors import responses, unprocessable
from service.api.routes.deps import Rt, StudyId, get_study
from service.api.security import Reader, Writer
from service.studies.schemas import CancelResult, StudyCreate, StudyList, StudyPublic
from service.studies.views import study_public
from trials.states import StudyState

router = APIRouter(prefix="/studies", tags=["studies"])


@router.post("", response_model=StudyPublic, status_code=201,
             responses=responses(400, 401, 413, 415))
def create_study(body: StudyCreate, rt: Rt, _: Writer) -> StudyPublic:
    s = rt.settings
    if body.n_trials is not None and body.n_trials > s.max_trials:
        raise unprocessable("n_trials", f"at most {s.max_trials} (SRU_HPO_MAX_TRIALS)")
    if body.parallelism > s.max_parallelism:
        raise unprocessable("parallelism", f"at most {s.max_parallelism} (SRU_HPO_MAX_PARALLELISM)")
    study = rt.store.studies.create(uuid.uuid4().hex[:12], body.stored())
    rt.drive(study.id)
    return study_public(study, rt.store.clock.now())


@router.get("", response_model=StudyList, responses=responses(401))
def list_studies(rt: Rt, _: Reader, state: StudyState | None = None,
                 offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> StudyList:
    total, studies = rt.store.studies.page(state, offset, limit)
    now = rt.store.clock.now()
    return StudyList(total=total, offset=offset, limit=limit,
                     studies=[study_public(s, now) for s in studies])


@router.get("/{sid}", response_model=StudyPublic, responses=responses(401, 404))
def read_study(sid: StudyId, rt: Rt, _: Reader) -> StudyPublic:
    return study_public(get_study(rt, sid), rt.store.clock.now())


@router.post("/{sid}/cancel", response_model=CancelResult,
             responses=responses(401, 404, 409, 415))
def cancel_study(sid: StudyId, rt: Rt, _: Writer) -> CancelResult:
    was = rt.store.studies.cancel(sid)
    if was is None:
        raise HTTPException(404, f"study {sid!r} not found")
    if not was.active:
        raise HTTPException(409, f"study {sid!r} is already {was.value}")
    queued, running = rt.store.jobs.cancel_study(sid)
    rt.drive(sid)  # its driver settles the counts as the running trials stop
    return CancelResult(id=sid, state=StudyState.CANCELLED, queued_cancelled=queued,
                        running_stopping=running)


@router.delete("/{sid}", status_code=204, response_class=Response,
               responses=responses(401, 404, 415))
def delete_study(sid: StudyId, rt: Rt, _: Writer) -> Response:
    if not rt.store.delete_study(sid):
        raise HTTPException(404, f"study {sid!r} not found")
    return Response(status_code=204)
