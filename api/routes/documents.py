"""Document upload: files to disk or the storage URL, then the ingestion deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.accepted import accepted_response
from api.deps import Slot
from api.errors import invalid
from api.prefect_tasks import start_task
from api.schemas import TaskAccepted
from api.start_route import TaskStartRoute, starts_task, task_start_openapi, task_start_responses
from api.uploads import (
    check_suffix,
    read_multipart,
    remove_upload_dir,
    safe_name,
    save_uploads,
)
from core.settings import Settings
from core.storage import uploads_location
from deployments.names import INGEST

router = APIRouter(prefix="/api/documents", tags=["documents"])

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                }
            }
        },
    }
}


@starts_task("ingest")
async def upload_documents(request: Request, slot: Slot, settings: Settings) -> Response:
    """Saves one or more files and starts their ingestion; answers at once with the task id."""
    user = slot.user
    max_file = int(settings.max_file_mb * 2**20)
    form = await read_multipart(
        request,
        max_bytes=settings.max_upload_files * (max_file + 4096),
        max_files=settings.max_upload_files,
    )
    try:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise invalid(("body", "files"), "no files in field 'files'", None)
        names: list[str] = []
        for upload in uploads:
            name = safe_name(upload.filename)
            check_suffix(name)
            if name in names:
                raise invalid(("body", "files"), f"{name} appears twice in the upload", name)
            names.append(name)
        folder, paths = await save_uploads(
            uploads_location(settings), user, list(zip(uploads, names, strict=True)), max_file
        )
    finally:
        await form.close()
    try:
        started = await start_task(
            request.app.state.prefect,
            request.app.state.reservoir,
            INGEST,
            kind="ingest",
            user=user,
            parameters={"paths": list(paths), "tenant": user, "names": paths},
            slot=slot,
        )
    except Exception:
        await run_in_threadpool(remove_upload_dir, folder)
        raise
    if started.parameters.get("paths") != list(paths):
        # A concurrent request with the same key won: its run ingests its own copy.
        await run_in_threadpool(remove_upload_dir, folder)
    return accepted_response(started.task_id, settings.api_base_url)


router.add_api_route(
    "/upload",
    upload_documents,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    openapi_extra=task_start_openapi(_MULTIPART_BODY),
    responses=task_start_responses(
        {
            411: {"description": "Content-Length required"},
            413: {"description": "Too large"},
            415: {"description": "Unsupported type"},
        }
    ),
    route_class_override=TaskStartRoute,
)
