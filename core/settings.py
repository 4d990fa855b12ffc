"""The one settings class of Octavius Pipelines; nothing else reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every `OCTAVIUS_*` variable, with its default for the embedded stack."""

    model_config = SettingsConfigDict(
        env_prefix="OCTAVIUS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(
        default=Path(".octavius"),
        description="Folder for everything the embedded stack writes: uploads, vectors, "
        "Prefect's database, results.",
    )
    storage_url: str | None = Field(
        default=None,
        description="fsspec URL every process can read (file:///shared/octavius, "
        "s3://bucket/prefix): results and caches go to <url>/results, uploads to <url>/uploads; "
        "unset means folders under OCTAVIUS_HOME.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options for the storage URL's fsspec filesystem, as a JSON object (for S3: "
        "endpoint_url, key, secret); unset, s3fs reads the standard AWS_* environment and "
        "config.",
    )
    tenant: str = Field(
        default="default",
        min_length=1,
        max_length=64,
        description="Tenant whose documents the CLI reads and writes.",
    )

    qdrant_url: str | None = Field(
        default=None,
        description="Qdrant server URL; unset means the embedded store under OCTAVIUS_HOME.",
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="Qdrant server API key.")
    qdrant_timeout_s: float = Field(
        default=30.0, gt=0, description="Timeout of one Qdrant server request, in seconds."
    )
    collection: str = Field(
        default="octavius",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Alias of the knowledge-base collection (versions sit behind it).",
    )
    store_lock_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a process waits for the embedded store's cross-process lock.",
    )
    upsert_batch_size: int = Field(
        default=256, ge=1, le=4096, description="Points written to Qdrant per request."
    )

    embedding_model: str | None = Field(
        default=None,
        description="Sentence-transformers model directory or name; unset means the bundled "
        "all-MiniLM-L6-v2.",
    )
    embedding_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible embeddings server (…/v1); overrides "
        "the local model.",
    )
    embedding_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the embeddings server."
    )
    embedding_remote_model: str = Field(
        default="all-MiniLM-L6-v2", description="Model name sent to the embeddings server."
    )
    embedding_threads: int | None = Field(
        default=None, ge=1, description="Torch threads per process; unset lets torch decide."
    )
    embed_batch_size: int = Field(
        default=128,
        ge=8,
        le=1024,
        description="Chunks per embedding task (one Dask submission).",
    )

    chunk_tokens: int = Field(
        default=200, ge=32, le=512, description="Target chunk size in model tokens."
    )
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, le=256, description="Tokens repeated between neighbouring chunks."
    )

    max_file_mb: float = Field(
        default=50.0, gt=0, description="Largest file accepted for ingestion, in MiB."
    )
    max_pages: int = Field(default=2000, ge=1, description="Largest PDF accepted, in pages.")
    max_upload_files: int = Field(
        default=50, ge=1, le=1000, description="Most files in one upload request."
    )

    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://host:8786); unset starts a "
        "LocalCluster per flow run.",
    )
    dask_workers: int = Field(
        default=2, ge=1, le=64, description="Workers of the LocalCluster that octavius up starts."
    )

    flow_run_limit: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Flow runs the embedded stack's serve() process executes at once.",
    )
    api_host: str = Field(default="127.0.0.1", description="Interface the API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes that octavius up runs on the one port (uvicorn --workers).",
    )
    api_access_log: bool = Field(
        default=False,
        description=(
            "Write uvicorn's log line for every request (off: /metrics counts and times requests "
            "by route, and the line costs a fifth of a bare request's CPU)."
        ),
    )
    prefect_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of the Prefect server that octavius up starts.",
    )
    api_base_url: str | None = Field(
        default=None,
        description="Public base URL of the API used in status links; unset means relative links.",
    )

    api_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="End-user bearer tokens, as a JSON object mapping token to user id.",
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description="JSON file mapping token to user id, merged with OCTAVIUS_API_TOKENS "
        "(octavius up writes one under OCTAVIUS_HOME when no token is configured).",
    )
    service_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the chat backend, which names the user in X-User-Id.",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="API requests one user may make per minute."
    )
    rate_limit_burst: int = Field(
        default=60, ge=1, description="Requests one user may make at once before the rate applies."
    )
    limits_backend: Literal["local", "prefect"] = Field(
        default="local",
        description="Where per-user limits live: 'local' (a SQLite file under OCTAVIUS_HOME that "
        "every API process on the machine shares) or 'prefect' (Prefect's global concurrency "
        "limits, for API processes on several machines).",
    )
    max_tasks_in_flight: int = Field(
        default=20, ge=1, description="Tasks one user may have scheduled or running at once."
    )
    reserved_runs: int = Field(
        default=120,
        ge=0,
        le=2000,
        description="Flow runs each API process keeps created ahead of demand per deployment it "
        "starts (ingest, audit, research), so a POST answers 202 without waiting for Prefect; "
        "0 creates every run on the request path.",
    )
    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive comments on idle event streams."
    )

    search_k_max: int = Field(default=50, ge=1, le=500, description="Largest k a search may ask.")
    # Defaults measured by benchmarks/fusion.py on the Debian reference question sets.
    fusion_weights_en: tuple[float, float] = Field(
        default=(1.0, 0.25),
        description="Reciprocal-rank-fusion weights (dense, sparse) for English queries.",
    )
    fusion_weights_es: tuple[float, float] = Field(
        default=(0.0, 1.0),
        description="Reciprocal-rank-fusion weights (dense, sparse) for Spanish queries; the "
        "English-only default model makes BM25 alone best (dense fills a short BM25 list).",
    )

    reindex_grace_hours: float = Field(
        default=72.0,
        gt=0,
        description="Hours a collection version replaced by a reindex is kept for `octavius "
        "reindex --rollback` before cleanup drops it.",
    )
    reindex_sample_queries: int = Field(
        default=5,
        ge=0,
        le=100,
        description="Sample queries a rebuilt version must answer before the alias moves to it.",
    )
    upload_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="Hours uploaded files are kept; cleanup removes older upload folders that "
        "no active task names.",
    )
    result_retention_hours: float = Field(
        default=720.0,
        gt=0,
        description="Hours persisted task results and caches are kept (OCTAVIUS_HOME/results or "
        "<storage URL>/results).",
    )
    cleanup_missing_sources: bool = Field(
        default=True,
        description="Cleanup deletes the points of documents whose source file is gone (absolute "
        "paths whose folder still exists; uploads are never pruned this way).",
    )

    alert_queue_threshold: int = Field(
        default=1000,
        ge=1,
        description="Scheduled runs waiting to start that raise the queue-backlog automation.",
    )
    alert_failures: int = Field(
        default=5,
        ge=1,
        description="Failed or crashed runs of one deployment within the alert window that raise "
        "the failure automation.",
    )
    alert_window_minutes: int = Field(
        default=60,
        ge=1,
        description="Window of the failure and queue-backlog automations, in minutes.",
    )
    crash_after_s: int = Field(
        default=600,
        ge=45,
        description="Seconds without a flow-run heartbeat after which the crash automation marks "
        "a run CRASHED; must exceed PREFECT_FLOWS_HEARTBEAT_FREQUENCY of every process running "
        "flows (the stack sets 30, Prefect's default is 180).",
    )

    llm_base_url: str | None = Field(
        default=None,
        description="Root of an OpenAI-compatible chat API up to its version (…/v1; a bare "
        "host gets /v1); unset means deep research writes extractive reports without an LLM.",
    )
    llm_model: str | None = Field(
        default=None, description="Model name sent to the chat API (required with a base URL)."
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the chat API."
    )
    llm_timeout_s: float = Field(
        default=60.0, gt=0, description="Timeout of one chat request, in seconds."
    )
    llm_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of a chat request after a timeout, 429 or 5xx (exponential backoff "
        "with jitter, honouring Retry-After).",
    )

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "://" not in value:
            raise ValueError(
                "must be a URL with a scheme, e.g. file:///shared/octavius or s3://b/p"
            )
        return value.rstrip("/")

    @property
    def uploads_dir(self) -> Path:
        """Folder where uploaded files are streamed to."""
        return self.home / "uploads"

    @property
    def store_dir(self) -> Path:
        """Folder of the embedded vector store."""
        return self.home / "qdrant"

    @property
    def results_dir(self) -> Path:
        """Folder where Prefect persists task results (and caches)."""
        return self.home / "results"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME of the embedded Prefect server."""
        return self.home / "prefect"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
