"""Document upload: files to disk, then the ingestion deployment."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.accepted import accepted
from api.deps import CurrentUser, PrefectDep, SettingsDep, TaskSlot
from api.errors import invalid
from api.prefect_tasks import IDEMPOTENCY_KEY_PATTERN, find_task, start_task
from api.schemas import TaskAccepted
from api.uploads import check_suffix, new_upload_dir, read_multipart, safe_name, save_upload
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


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    openapi_extra=_MULTIPART_BODY,
    responses={
        411: {"description": "Content-Length required"},
        413: {"description": "Too large"},
        415: {"description": "Unsupported type"},
    },
)
async def upload_documents(
    request: Request,
    response: Response,
    settings: SettingsDep,
    client: PrefectDep,
    user: CurrentUser,
    slot: TaskSlot,
    idempotency_key: Annotated[
        str | None, Header(pattern=IDEMPOTENCY_KEY_PATTERN, include_in_schema=False)
    ] = None,
) -> TaskAccepted:
    """Saves one or more files and starts their ingestion; answers at once with the task id."""
    if idempotency_key is not None:
        earlier = await find_task(client, user=user, kind="ingest", key=idempotency_key)
        if earlier is not None:
            return accepted(response, str(earlier.id), settings.api_base_url)
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
        folder = new_upload_dir(settings.uploads_dir, user)
        paths = {}
        for upload, name in zip(uploads, names, strict=True):
            path = await run_in_threadpool(save_upload, upload, folder, name, max_file)
            paths[str(path.resolve())] = name
    finally:
        await form.close()
    try:
        run = await start_task(
            client,
            INGEST,
            kind="ingest",
            user=user,
            parameters={"paths": list(paths), "tenant": user, "names": paths},
            slot=slot,
            idempotency_key=idempotency_key,
        )
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if run.parameters.get("paths") != list(paths):
        # A concurrent request with the same key won: its run ingests its own copy.
        shutil.rmtree(folder, ignore_errors=True)
    return accepted(response, str(run.id), settings.api_base_url)
