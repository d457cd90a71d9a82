"""``/workers``, ``/healthz``, ``/metrics``: what operators and orchestrators read."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

from service.api.errors import RETRY_AFTER, responses
from service.api.routes.deps import Rt
from service.api.security import Reader
from service.studies.schemas import Health, WorkerPublic
from trials.states import JobState, StudyState
from trials.summary_doc import Summary

router = APIRouter(tags=["operations"])


@router.get("/workers", response_model=list[WorkerPublic], responses=responses(401))
def workers(rt: Rt, _: Reader) -> list[WorkerPublic]:
    return [WorkerPublic.model_validate(w, from_attributes=True) for w in rt.store.workers.live()]


@router.get("/healthz", response_model=Health, responses=responses())
def healthz(rt: Rt) -> Health:
    """200 when the database answers within a second; 503 otherwise (within 2 s)."""
    try:
        rt.ping()
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        raise HTTPException(503, f"database unreachable: {type(exc).__name__}",
                            headers={"Retry-After": str(RETRY_AFTER)}) from exc
    return Health(status="ok", database=rt.database, studies_driven=rt.studies_driven,
                  instance=rt.settings.instance_id)


@router.get("/metrics", response_class=PlainTextResponse, responses=responses(401))
def metrics(rt: Rt, _: Reader) -> str:
    """Prometheus text format: jobs by state, queue depth, live workers, studies by state."""
    # written out: each family is one query per scrape, so a client-library registry would
    # add a dependency and no behaviour
    jobs = rt.store.job_reads.counts_by_state()
    lines = ["# HELP sru_hpo_jobs Jobs by state (all studies).", "# TYPE sru_hpo_jobs gauge"]
    lines += [f'sru_hpo_jobs{{state="{s.label}"}} {jobs.get(int(s), 0)}' for s in JobState]
    lines += ["# HELP sru_hpo_queue_depth Jobs waiting for a worker.",
              "# TYPE sru_hpo_queue_depth gauge",
              f"sru_hpo_queue_depth {jobs.get(int(JobState.NEW), 0)}",
              "# HELP sru_hpo_promotions_total ASHA promotions of paused trials.",
              "# TYPE sru_hpo_promotions_total counter",
              f"sru_hpo_promotions_total {rt.store.job_reads.promotions_total()}",
              "# HELP sru_hpo_workers Live workers.", "# TYPE sru_hpo_workers gauge",
              f"sru_hpo_workers {len(rt.store.workers.live())}",
              "# HELP sru_hpo_studies Studies by state.", "# TYPE sru_hpo_studies gauge"]
    studies = rt.store.studies.count_by_state()
    lines += [f'sru_hpo_studies{{state="{s.value}"}} {studies.get(s.value, 0)}'
              for s in StudyState]
    return "\n".join(lines + _study_lines(rt.store.studies.active_summaries())) + "\n"


def _study_lines(active: list[tuple[str, Summary]]) -> list[str]:
    """Per active study: epochs spent and, with a budget, epochs the budget has left."""
    lines = ["# HELP sru_hpo_study_epochs_spent Epochs trained by an active study's search "
             "trials.", "# TYPE sru_hpo_study_epochs_spent gauge"]
    lines += [f'sru_hpo_study_epochs_spent{{study="{sid}"}} {int(s.get("epochs_spent") or 0)}'
              for sid, s in active]
    lines += ["# HELP sru_hpo_study_epochs_left Epochs an active study's budget has not yet "
              "committed.", "# TYPE sru_hpo_study_epochs_left gauge"]
    lines += [f'sru_hpo_study_epochs_left{{study="{sid}"}} {left:g}'
              for sid, s in active if (left := s.get("epochs_left")) is not None]
    return lines
