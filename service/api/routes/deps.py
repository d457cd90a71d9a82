"""Dependencies shared by the routers: the runtime, path parameters, looking up a study."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from service.api.runtime import Runtime
from trials.records import Study

__all__ = ["Rt", "StudyId", "TrialId", "get_study"]


def runtime(request: Request) -> Runtime:
    return request.app.state.rt


Rt = Annotated[Runtime, Depends(runtime)]
StudyId = Annotated[str, Path(min_length=1, max_length=64, description="study id")]
TrialId = Annotated[int, Path(ge=0, le=2**31 - 1, description="trial id (tid)")]


def get_study(rt: Runtime, sid: str) -> Study:
    study = rt.store.studies.get(sid)
    if study is None:
        raise HTTPException(404, f"study {sid!r} not found")
    return study
