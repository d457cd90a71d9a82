"""All configuration, read from the environment (``SRU_HPO_*``) by one pydantic-settings class:
the database, the API, the orchestrator, the workers and the search-space limits.

Every part reads it, so it imports nothing of the project (tests/test_boundaries.py checks):
it is the one module of ``sru_hpo/`` a library package may import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SRU_HPO_", extra="ignore")

    mongo_url: str | None = Field(
        None, description="mongodb:// URL. Unset: an embedded nx-27017 server in home/db."
    )
    db_name: str = Field("sru_hpo", description="database name inside MongoDB")
    home: Path = Field(Path("runs"), description="embedded database, checkpoints, logs")
    data_dir: Path = Field(Path("data"), description="datasets (MNIST files) live here")
    download: bool = Field(True, description="workers download MNIST into data_dir when it is "
                           "missing (off: fail at once with where to put the files)")
    api_token: str | None = Field(None, description="Bearer token required on write endpoints")
    read_token: str | None = Field(
        None, description="Bearer token required on every GET but /healthz (the write token "
        "is accepted too); unset: reads are open")
    allowed_hosts: str = Field(
        "127.0.0.1,localhost,[::1],::1",
        description="comma-separated Host names (and Origin hosts) a state-changing request may "
        "carry: guards against DNS rebinding and cross-site form posts; '*' allows any")
    host: str = Field("127.0.0.1", description="API bind address")
    port: int = Field(8000, ge=0, le=65535, description="API port")
    heartbeat_interval: float = Field(10.0, gt=0, description="seconds between worker heartbeats")
    max_retries: int = Field(2, ge=0, description="requeues of a job whose worker died")
    connect_timeout: float = Field(30.0, gt=0, description="seconds to retry a lost database")
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest accepted request body")
    max_trials: int = Field(10_000, gt=0, description="largest n_trials a study may ask for")
    max_parallelism: int = Field(256, gt=0, description="largest parallelism a study may ask for")
    fail_fast_trials: int = Field(
        3, ge=0, description="a study fails at once when its first N finished trials all failed "
        "with the same error (0: never)")
    gpu_slots: int = Field(1, ge=1, le=64, description="workers that may share one GPU")
    instance_id: str | None = Field(
        None, description="an id /healthz reports, so a launcher knows it reached its own API")
    drive_studies: bool = Field(
        True, description="the API process drives the studies (false: `sru-hpo orchestrate` "
        "processes do, for deployments that scale the API apart from the orchestrator)")
    driver_poll: float = Field(0.5, gt=0, description="seconds between study-driver passes")
    stall_timeout: float = Field(
        300.0, gt=0, description="a trial whose trainer makes no progress for this many seconds "
        "(or 20 × its mean step time, if longer) is killed and retried (reason stalled)")
    max_choice_options: int = Field(256, ge=1, description="options of one choice in a space")
    max_nesting: int = Field(4, ge=1, description="levels of conditional sub-spaces")
    max_params: int = Field(64, ge=1, description="entries in one (sub-)space")
    snapshot_seconds: float = Field(
        60.0, ge=0, description="a running trial saves its training state this often (resume)")


@lru_cache
def get_settings() -> Settings:
    return Settings()
