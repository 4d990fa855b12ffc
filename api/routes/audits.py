"""Document audit: a PDF (and maybe a policy) to storage, validated, then the audit deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from api.accepted import accepted
from api.deps import AuditSlot, PrefectDep, ReservoirDep, SettingsDep
from api.errors import invalid
from api.prefect_tasks import start_task
from api.schemas import TaskAccepted
from api.uploads import (
    read_head,
    read_multipart,
    remove_upload_dir,
    safe_name,
    save_uploads,
    write_upload_bytes,
)
from core.storage import uploads_location
from deployments.names import AUDIT
from tasks.audit.policy import MAX_POLICY_BYTES, POLICIES_DIR, PolicyError, parse_policy

router = APIRouter(prefix="/api/audits", tags=["audits"])

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "policy": {
                            "type": "string",
                            "description": "Audit policy YAML, as a file or a text field; "
                            "logo images are taken from the shipped policies folder.",
                        },
                    },
                }
            }
        },
    }
}
_POLICY_NAME = "policy.yaml"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    openapi_extra=_MULTIPART_BODY,
    responses={
        411: {"description": "Content-Length required"},
        413: {"description": "Too large"},
        415: {"description": "Not a PDF"},
        422: {"description": "Invalid policy"},
    },
)
async def start_audit(
    request: Request,
    response: Response,
    settings: SettingsDep,
    client: PrefectDep,
    reservoir: ReservoirDep,
    slot: AuditSlot,
) -> TaskAccepted:
    """Saves one PDF, checks the optional policy, and starts its audit; answers with the task id."""
    user = slot.user
    if slot.earlier is not None:
        return accepted(response, slot.earlier, settings.api_base_url)
    max_file = int(settings.max_file_mb * 2**20)
    form = await read_multipart(
        request, max_bytes=max_file + MAX_POLICY_BYTES + 8192, max_files=2, max_fields=4
    )
    try:
        policy_text = await _policy_text(form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid(("body", "file"), "no PDF in field 'file'", None)
        name = safe_name(upload.filename)
        if Path(name).suffix.lower() != ".pdf":
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{name}: only PDF files can be audited"
            )
        folder, saved = await save_uploads(
            uploads_location(settings), user, [(upload, name)], max_file
        )
        path = next(iter(saved))
    finally:
        await form.close()
    if b"%PDF-" not in await run_in_threadpool(read_head, path):
        await run_in_threadpool(remove_upload_dir, folder)
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{name}: not a PDF file (no %PDF header)"
        )
    policy_path = None
    if policy_text is not None:
        policy_path = await run_in_threadpool(write_upload_bytes, folder, _POLICY_NAME, policy_text)
    try:
        started = await start_task(
            client,
            reservoir,
            AUDIT,
            kind="audit",
            user=user,
            parameters={
                "paths": [path],
                "policy": policy_path,
                "tenant": user,
                "names": {path: name},
            },
            slot=slot,
        )
    except Exception:
        await run_in_threadpool(remove_upload_dir, folder)
        raise
    if started.parameters.get("paths") != [path]:
        # A concurrent request with the same key won: its run audits its own copy.
        await run_in_threadpool(remove_upload_dir, folder)
    return accepted(response, started.task_id, settings.api_base_url)


async def _policy_text(form: FormData) -> bytes | None:
    """The uploaded policy's YAML once it validates; 422 with every problem when it does not."""
    field = form.get("policy")
    if field is None or field == "":
        return None
    if isinstance(field, UploadFile):
        raw = await field.read(MAX_POLICY_BYTES + 1)
    else:
        raw = field.encode()
    try:
        # Uploaded policies may only name logo images that ship with the project.
        parse_policy(raw, source="policy", base_dir=POLICIES_DIR, image_roots=[POLICIES_DIR])
    except PolicyError as exc:
        raise invalid(("body", "policy"), str(exc), None) from exc
    return raw
