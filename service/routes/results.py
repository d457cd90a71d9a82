"""``/studies/{id}/retrain`` and ``/studies/{id}/checkpoint``: what the study produced."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from service.errors import responses
from service.routes.deps import Rt, StudyId, get_study
from service.schemas import RetrainCandidate, RetrainPublic
from service.security import Reader
from trials.states import JobKind, JobState

router = APIRouter(prefix="/studies/{sid}", tags=["results"])


def _tid(job_id: str | None) -> int | None:
    return int(job_id.rsplit(":", 1)[1]) if job_id else None


@router.get("/retrain", response_model=RetrainPublic, responses=responses(401, 404))
def retrain(sid: StudyId, rt: Rt, _: Reader) -> RetrainPublic:
    """The retrain of the best configuration(s) and the one test-set evaluation."""
    study = get_study(rt, sid)
    retrains = rt.store.jobs.page(sid, state=None, kind=JobKind.RETRAIN.value, by_score=False,
                                  offset=0, limit=100)
    if not retrains:
        return RetrainPublic(state="pending", epochs=study["retrain_epochs"])
    tests = rt.store.jobs.page(sid, state=None, kind=JobKind.TEST.value, by_score=False,
                               offset=0, limit=1)
    test = tests[0] if tests else None
    chosen = next((r for r in retrains if test and r["_id"] == test.get("source")),
                  retrains[0] if len(retrains) == 1 else None)
    candidates = [RetrainCandidate(tid=r["tid"], source_tid=_tid(r.get("source")),
                                   state=JobState(r["state"]).label,
                                   best_val_acc=(r.get("result") or {}).get("best_val_acc"))
                  for r in retrains]
    state = (JobState(test["state"]).label if test is not None
             else "running" if any(not JobState(r["state"]).is_terminal() for r in retrains)
             else "done")
    if chosen is None:
        return RetrainPublic(state=state, candidates=candidates, epochs=study["retrain_epochs"])
    res, tres = chosen.get("result") or {}, (test or {}).get("result") or {}
    return RetrainPublic(
        state=state, candidates=candidates, tid=chosen["tid"], params=chosen["params"],
        epochs=chosen["epochs"], best_val_acc=res.get("best_val_acc"),
        best_epoch=res.get("best_epoch"), test_acc=tres.get("test_acc"),
        test_loss=tres.get("test_loss"), checkpoint=chosen.get("checkpoint") is not None,
        curve=rt.store.curves.get(chosen["_id"]))


@router.get("/checkpoint", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}},
          "description": "the retrained weights (torch.save; load with weights_only=True)"},
    **responses(401, 404)})
def checkpoint(sid: StudyId, rt: Rt, _: Reader) -> Response:
    study = get_study(rt, sid)
    job = rt.store.jobs.retrain_of(sid, study.get("retrain_tid"))
    data = rt.store.jobs.load_checkpoint(job) if job else None
    if data is None:
        raise HTTPException(404, f"study {sid!r} has no retrained checkpoint yet")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{sid}.pt"'})


