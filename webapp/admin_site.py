"""Django admin that answers a signed-in non-admin with 403 instead of another login form."""
from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def _signed_in_non_admin(request: HttpRequest) -> bool:
    return request.user.is_authenticated and not request.user.is_staff


class PreftuneAdminSite(admin.AdminSite):
    site_header = "preftune admin"
    site_title = "preftune admin"

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if _signed_in_non_admin(request):
                raise PermissionDenied("Only admins can open the admin site.")
            return inner(request, *args, **kwargs)

        return update_wrapper(wrapper, inner)

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if _signed_in_non_admin(request):
            raise PermissionDenied("Only admins can open the admin site.")
        return super().login(request, extra_context)
