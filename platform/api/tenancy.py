"""Tenant context for API code, safe under ASGI.

Under ASGI, Django runs sync code on one shared thread, and other requests' middleware
may switch that thread's connection to another tenant between two awaits of an async
view. So every block of database work re-applies its request's tenant first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

T = TypeVar("T")


def enter_tenant(tenant) -> None:
    if tenant is None:
        connection.set_schema_to_public()
    else:
        connection.set_tenant(tenant)


async def in_tenant(tenant, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run `fn` (sync, database work) in `tenant`'s schema from async code."""

    def call():
        enter_tenant(tenant)
        try:
            return fn(*args, **kwargs)
        finally:
            # Back to the pool before the view goes on to wait (blocking runs, streams):
            # a waiting client holds no database connection.
            connection.close()

    return await sync_to_async(call)()


class TenantContextMixin:
    """For sync DRF views: pin the request's tenant before authentication and the handler."""

    def initial(self, request, *args, **kwargs):
        enter_tenant(getattr(request, "tenant", None))
        super().initial(request, *args, **kwargs)


async def in_tenant_worker_thread(tenant, fn: Callable[..., T], *args, **kwargs) -> T:
    """Like `in_tenant`, on a thread of its own: for work that waits on a provider and must
    not hold up the shared thread every sync request runs on."""

    def call():
        enter_tenant(tenant)
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return await sync_to_async(call, thread_sensitive=False)()
