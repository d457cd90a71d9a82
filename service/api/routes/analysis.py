"""``/studies/{id}/importance`` and ``/studies/{id}/trials.csv``: what the search found."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.errors import responses
from service.api.routes.deps import Rt, StudyId, get_study
from service.api.security import Reader
from service.studies.analysis import importance, to_csv, trials_table
from service.studies.schemas import Importance
from trials.records import JobRecord
from trials.states import JobKind

router = APIRouter(prefix="/studies/{sid}", tags=["analysis"])
MAX_ROWS = 100_000


def _trials(rt, sid: str) -> list[JobRecord]:  # noqa: ANN001
    return rt.store.job_reads.page(sid, state=None, kind=JobKind.TRIAL.value, by_score=False,
                                   offset=0, limit=MAX_ROWS)


@router.get("/importance", response_model=Importance, responses=responses(401, 404))
def parameter_importance(sid: StudyId, rt: Rt, _: Reader) -> Importance:
    """How much each searched parameter explains the best validation accuracy (random forest
    impurity importance over finished trials; needs at least 10)."""
    study = get_study(rt, sid)
    return importance(study.space, _trials(rt, sid))


@router.get("/trials.csv", response_class=Response, responses={
    200: {"content": {"text/csv": {}}, "description": "one row per search trial, one column "
          "per searched parameter"}, **responses(401, 404)})
def trials_csv(sid: StudyId, rt: Rt, _: Reader) -> Response:
    study = get_study(rt, sid)
    header, rows = trials_table(study.space, _trials(rt, sid))
    return Response(to_csv(header, rows), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{sid}-trials.csv"'})
