"""``/comparisons``: create, list, read, cancel, delete (service/studies/comparisons.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from service.api.errors import responses, unprocessable
from service.api.routes.deps import Rt
from service.api.security import Reader, Writer
from service.studies import comparisons as cmp
from service.studies.comparisons import ComparisonCreate, ComparisonList, ComparisonPublic
from trials.records import Comparison

router = APIRouter(prefix="/comparisons", tags=["comparisons"])
ComparisonId = Annotated[str, Path(min_length=1, max_length=64, description="comparison id")]


def _get(rt: Rt, cid: str) -> Comparison:
    comparison = rt.store.comparisons.get(cid)
    if comparison is None:
        raise HTTPException(404, f"comparison {cid!r} not found")
    return comparison


@router.post("", response_model=ComparisonPublic, status_code=201,
             responses=responses(400, 401, 413, 415))
def create_comparison(body: ComparisonCreate, rt: Rt, _: Writer) -> ComparisonPublic:
    """One study per variant, the same budget, scheduler, split and seeds; run interleaved."""
    if body.n_trials is not None and body.n_trials > rt.settings.max_trials:
        raise unprocessable("n_trials", f"at most {rt.settings.max_trials} (SRU_HPO_MAX_TRIALS)")
    if body.parallelism > rt.settings.max_parallelism:
        raise unprocessable("parallelism", f"at most {rt.settings.max_parallelism} "
                            "(SRU_HPO_MAX_PARALLELISM)")
    comparison, made = cmp.create(rt.store, body)
    for sid in made:
        rt.drive(sid)
    return cmp.public(rt.store, comparison)


@router.get("", response_model=ComparisonList, responses=responses(401))
def list_comparisons(rt: Rt, _: Reader, offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> ComparisonList:
    total, found = rt.store.comparisons.page(offset, limit)
    return ComparisonList(total=total, offset=offset, limit=limit,
                          comparisons=[cmp.public(rt.store, c) for c in found])


@router.get("/{cid}", response_model=ComparisonPublic, responses=responses(401, 404))
def read_comparison(cid: ComparisonId, rt: Rt, _: Reader) -> ComparisonPublic:
    """One row per variant: best validation accuracy, test accuracy mean and sd over the
    seeds, parameters, epochs and hours spent, epochs to 95% of its own best."""
    return cmp.public(rt.store, _get(rt, cid))


@router.post("/{cid}/cancel", response_model=ComparisonPublic,
             responses=responses(401, 404, 415))
def cancel_comparison(cid: ComparisonId, rt: Rt, _: Writer) -> ComparisonPublic:
    """Cancel every variant still running (each keeps what it found)."""
    comparison = _get(rt, cid)
    for sid in comparison.studies.values():
        was = rt.store.studies.cancel(sid)
        if was is not None and was.active:
            rt.store.jobs.cancel_study(sid)
            rt.drive(sid)
    return cmp.public(rt.store, comparison)


@router.delete("/{cid}", status_code=204, response_class=Response,
               responses=responses(401, 404, 415))
def delete_comparison(cid: ComparisonId, rt: Rt, _: Writer) -> Response:
    """Delete the comparison and its studies."""
    if not cmp.delete(rt.store, cid):
        raise HTTPException(404, f"comparison {cid!r} not found")
    return Response(status_code=204)


__all__ = ["router"]
