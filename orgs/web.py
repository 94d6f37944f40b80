"""The web UI's one way to know who is looking and for which org.

A signed-in user may belong to several orgs; the one they are looking at is kept in the session and can be
switched. Every UI view reads its org through ``membership_for`` and its objects through that org, so another
org's run, task or queue is a 404 exactly as in the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .models import Membership

SESSION_ORG = "jetty_org"


def memberships_of(request: HttpRequest) -> list[Membership]:
    user = getattr(request, "user", None)
    # API pages rendered through templates (the docs) may carry no user, or a token's principal: not a member.
    if not isinstance(user, get_user_model()) or not user.is_authenticated:
        return []
    cached = getattr(request, "_jetty_memberships", None)
    if cached is None:
        cached = list(Membership.objects.filter(user=user).select_related("org").order_by("org__name"))
        request._jetty_memberships = cached  # type: ignore[attr-defined]
    return cached


def membership_for(request: HttpRequest) -> Membership:
    """The signed-in user's membership of the org they are looking at (404 when they belong to none)."""
    memberships = memberships_of(request)
    if not memberships:
        raise Http404("You are not a member of any organisation")
    chosen = request.session.get(SESSION_ORG)
    return next((m for m in memberships if m.org.public_id == chosen), memberships[0])


def require_write(membership: Membership) -> None:
    """Viewers read; changing anything needs a member or above. The refusal is a 404-like 403 page."""
    from django.core.exceptions import PermissionDenied

    from .models import Role

    if not Role(membership.role).can_write:
        raise PermissionDenied("Viewers cannot change anything in this organisation")


def org_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: the orgs the user belongs to and the current one."""
    memberships = memberships_of(request)
    if not memberships:
        return {}
    current = membership_for(request)
    return {"memberships": memberships, "membership": current, "org": current.org}


class Login(LoginView):
    template_name = "orgs/login.html"
    redirect_authenticated_user = True


def login_client_ip(request: HttpRequest) -> str:
    """The address login throttling counts failures against (django-axes' AXES_CLIENT_IP_CALLABLE).

    The peer's address, or with JETTY_PROXY_COUNT proxies in front the entry they appended to X-Forwarded-For:
    entries to the left of it are whatever the client sent, and trusting them would let it pick a fresh address
    for every guess.
    """
    from django.conf import settings

    proxies = settings.JETTY_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))


@login_required
@require_POST
def switch_org(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("org", "")
    if not any(m.org.public_id == wanted for m in memberships_of(request)):
        raise Http404
    request.session[SESSION_ORG] = wanted
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = "/runs/"
    # Pages of one org's objects mean nothing in another: go to the list.
    return redirect("/runs/" if back.startswith("/runs/") else back)
