"""``/studies/{id}/retrain`` and ``/studies/{id}/checkpoint``: what the study produced."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from service.api.errors import responses
from service.api.routes.deps import Rt, StudyId, get_study
from service.api.security import Reader
from service.orchestrator.evaluation import FinalEvaluation
from service.studies.schemas import EvaluationPublic, RetrainCandidate, RetrainPublic
from trials.jobs import tid_of
from trials.states import JobKind

router = APIRouter(prefix="/studies/{sid}", tags=["results"])


def _tid(job_id: str | None) -> int | None:
    return tid_of(job_id) if job_id else None


@router.get("/retrain", response_model=RetrainPublic, responses=responses(401, 404))
def retrain(sid: StudyId, rt: Rt, _: Reader) -> RetrainPublic:
    """The retrain of the best configuration(s), the winner's seed runs and their test-set
    evaluations (service/orchestrator/evaluation.py)."""
    study = get_study(rt, sid)
    pages = {kind: rt.store.job_reads.page(sid, state=None, kind=kind.value, by_score=False,
                                           offset=0, limit=100)
             for kind in (JobKind.RETRAIN, JobKind.TEST)}
    final = FinalEvaluation.of(study, pages[JobKind.RETRAIN], pages[JobKind.TEST])
    state = study.retrain_state(final.state())
    candidates = [RetrainCandidate(tid=r.tid, source_tid=_tid(r.source), state=r.state.label,
                                   best_val_acc=r.result.best_val_acc)
                  for r in final.candidates]
    chosen = final.winner or (final.candidates[0] if len(final.candidates) == 1 else None)
    if chosen is None:
        return RetrainPublic(state=state, candidates=candidates, epochs=study.retrain_epochs,
                             seeds=len(final.seeds))
    res, stats = chosen.result, final.stats()
    evaluations = [EvaluationPublic.model_validate(e, from_attributes=True) for e in final.evaluations()]
    first = next((e for e in evaluations if e.retrain_tid == chosen.tid), None)
    return RetrainPublic(
        state=state, candidates=candidates, tid=chosen.tid, params=dict(chosen.params),
        epochs=chosen.epochs, best_val_acc=res.best_val_acc, best_epoch=res.best_epoch,
        test_acc=stats["test_acc"], test_acc_sd=stats["test_acc_sd"],
        test_loss=first.test_loss if first else None, seeds=len(final.seeds),
        evaluations=evaluations, checkpoint=chosen.checkpoint is not None,
        curve=rt.store.curves.get(chosen.id))


@router.get("/checkpoint", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}},
          "description": "the retrained weights (torch.save; load with weights_only=True)"},
    **responses(401, 404)})
def checkpoint(sid: StudyId, rt: Rt, _: Reader,
               tid: Annotated[int | None, Query(ge=0, le=10**9, description=
                              "a retrain's tid (one seed run; GET /studies/ID/retrain lists "
                              "them); default: the winner's")] = None) -> Response:
    study = get_study(rt, sid)
    job = rt.store.job_reads.retrain_of(sid, study.retrain_tid if tid is None else tid)
    if tid is not None and (job is None or job.kind != JobKind.RETRAIN):
        raise HTTPException(404, f"study {sid!r} has no retrain with tid {tid}")
    data = rt.store.job_reads.load_checkpoint(job) if job else None
    if data is None:
        raise HTTPException(404, f"study {sid!r} has no retrained checkpoint yet")
    name = sid if tid is None else f"{sid}-{tid}"
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}.pt"'})


