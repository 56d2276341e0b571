"""Guarded finalizer changes: never overwrite what another controller did to the list."""

from __future__ import annotations

from typing import Any

from tierra.shell.kube import JSON_PATCH, KubeClient, KubeError, Obj


async def _patch(
    client: KubeClient, kind: str, meta: Obj, patch: list[dict[str, Any]]
) -> Obj | None:
    """A guarded JSON patch: the patched object, or None when it is gone (404) or the guard
    failed (409/422: a newer version exists)."""
    try:
        return await client.patch(kind, meta["name"], meta.get("namespace"), patch, JSON_PATCH)
    except KubeError as error:
        if error.status not in (404, 409, 422):
            raise
        return None


def _adding(meta: Obj, finalizer: str) -> list[dict[str, Any]]:
    finalizers = meta.get("finalizers") or []
    if finalizers:  # only the finalizers must be as we saw them
        return [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]
    return [  # (JSON patch cannot test that a field is absent)
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
    ]


async def add_finalizer(
    client: KubeClient, kind: str, body: Obj, finalizer: str, attempts: int = 2
) -> Obj | None:
    """Add ``finalizer``; a lost race re-reads the object and tries again. Returns the object
    as written (or as re-read when it already carries the finalizer), None when it is gone,
    being deleted, or kept changing."""
    for attempt in range(attempts):
        meta = body["metadata"]
        if finalizer in (meta.get("finalizers") or []):
            return body
        written = await _patch(client, kind, meta, _adding(meta, finalizer))
        if written is not None:
            return written
        if attempt + 1 < attempts:
            fresh = await client.get(kind, meta["name"], meta.get("namespace"))
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return None  # gone or going: the deletion's event brings the caller back
            body = fresh
    return None


async def remove_finalizer(
    client: KubeClient, kind: str, body: Obj, finalizer: str, attempts: int = 4
) -> bool:
    """Remove ``finalizer``, guarded so that a concurrent change of the finalizers (other
    controllers add and remove theirs) is never overwritten: a lost race re-reads the object
    and tries again. False when it kept losing (the caller retries later)."""
    for _ in range(attempts):
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if finalizer not in finalizers:
            return True
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in finalizers if f != finalizer],
            },
        ]
        if await _patch(client, kind, meta, patch) is not None:
            return True
        fresh = await client.get(kind, meta["name"], meta.get("namespace"))
        if fresh is None:
            return True  # gone: nothing holds it any more
        body = fresh
    return False
