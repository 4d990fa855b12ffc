"""Deep research: a question in, a cited report from the caller's documents out (as a task)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.accepted import accepted
from api.deps import CurrentUser, PrefectDep, SettingsDep, TaskSlot
from api.prefect_tasks import IDEMPOTENCY_KEY_PATTERN, find_task, start_task
from api.schemas import TaskAccepted
from core.research_models import ReportLanguage
from deployments.names import RESEARCH
from tasks.research.pipeline import MAX_DEPTH, MIN_DEPTH

router = APIRouter(prefix="/api/research", tags=["research"])

KIND = "research"


class ResearchRequest(BaseModel):
    """A research question."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=3, max_length=2000, description="The question, in Spanish or English."
    )
    language: ReportLanguage | None = Field(
        default=None, description="Language of the report; unset means the question's."
    )
    depth: int = Field(
        default=3,
        ge=MIN_DEPTH,
        le=MAX_DEPTH,
        description="How far to dig: more sub-questions and passages.",
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if len(query.strip()) < 3:
            raise ValueError("query must have at least 3 characters besides spaces")
        return query.strip()


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={503: {"description": "The research deployment is not served"}},
)
async def start_research(
    body: ResearchRequest,
    response: Response,
    settings: SettingsDep,
    client: PrefectDep,
    user: CurrentUser,
    slot: TaskSlot,
    idempotency_key: Annotated[
        str | None, Header(pattern=IDEMPOTENCY_KEY_PATTERN, include_in_schema=False)
    ] = None,
) -> TaskAccepted:
    """Starts a research run over the caller's documents; answers at once with the task id."""
    run = None
    if idempotency_key is not None:
        run = await find_task(client, user=user, kind=KIND, key=idempotency_key)
    if run is None:
        run = await start_task(
            client,
            RESEARCH,
            kind=KIND,
            user=user,
            parameters={
                "query": body.query,
                "tenant": user,
                "language": body.language,
                "depth": body.depth,
            },
            slot=slot,
            idempotency_key=idempotency_key,
        )
    return accepted(response, str(run.id), settings.api_base_url)
