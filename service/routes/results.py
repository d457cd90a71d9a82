"""``/studies/{id}/retrain`` and ``/studies/{id}/checkpoint``: what the study produced."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from service.errors import responses
from service.routes.deps import Rt, StudyId, get_study
from service.schemas import RetrainPublic
from service.security import Reader
from trials.states import JobKind, JobState

router = APIRouter(prefix="/studies/{sid}", tags=["results"])


@router.get("/retrain", response_model=RetrainPublic, responses=responses(401, 404))
def retrain(sid: StudyId, rt: Rt, _: Reader) -> RetrainPublic:
    study = get_study(rt, sid)
    job = rt.store.jobs.retrain_of(sid, study.get("retrain_tid"))
    if job is None:
        return RetrainPublic(state="pending", epochs=study["retrain_epochs"])
    res = job.get("result") or {}
    return RetrainPublic(
        state=JobState(job["state"]).label, tid=job["tid"], params=job["params"],
        epochs=job["epochs"], best_val_acc=res.get("best_val_acc"),
        best_epoch=res.get("best_epoch"), test_acc=res.get("test_acc"),
        test_loss=res.get("test_loss"), checkpoint=job.get("checkpoint") is not None,
        curve=rt.store.curves.get(job["_id"]))


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


__all__ = ["router", "JobKind"]
