"""A sandbox's run token is for its own model calls: Django (the UI, admin and ``/api/v1``) refuses it outright."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from orgs.api_errors import error_body
from orgs.auth import bearer_value

from .models import RUN_TOKEN_PREFIX

RUN_TOKEN_ONLY_MODELS = "A run's token can only call models through the gateway"


def presents_run_token(request: HttpRequest) -> bool:
    """Whether the request carries a run token anywhere a token is read (the gateway reads all of these)."""
    offered = (
        bearer_value(request.headers.get("Authorization")),
        request.headers.get("X-Api-Key"),
        request.headers.get("X-Goog-Api-Key"),
        request.GET.get("key"),
    )
    return any((value or "").strip().startswith(RUN_TOKEN_PREFIX) for value in offered)


class RunTokenFence:
    """403 for every Django request that presents a run token: the gateway's model routes never come here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if presents_run_token(request):
            return JsonResponse(
                error_body(403, f"{RUN_TOKEN_ONLY_MODELS}, not {request.path}", code="run_token_forbidden"), status=403
            )
        return self.get_response(request)
