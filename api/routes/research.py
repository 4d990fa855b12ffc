"""Deep research: a question in, a cited report from the caller's documents out (as a task)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.accepted import accepted
from api.deps import PrefectDep, ResearchSlot, ReservoirDep, SettingsDep
from api.prefect_tasks import start_task
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
    reservoir: ReservoirDep,
    slot: ResearchSlot,
) -> TaskAccepted:
    """Starts a research run over the caller's documents; answers at once with the task id."""
    user = slot.user
    if slot.earlier is not None:
        return accepted(response, slot.earlier, settings.api_base_url)
    started = await start_task(
        client,
        reservoir,
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
    )
    return accepted(response, started.task_id, settings.api_base_url)
