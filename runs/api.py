"""Run control through the API: cancel."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from trajectories.api import get_run_for
from trajectories.serializers import RunSerializer

from .actions import cancel_run


@extend_schema(request=None, responses=RunSerializer, operation_id="runs_cancel")
@api_view(["POST"])
def run_cancel(request: Request, public_id: str) -> Response:
    """Cancel a run: a queued run ends at once; a running one when its worker has killed the sandbox."""
    run = cancel_run(get_run_for(request, public_id))
    return Response(RunSerializer(run).data)
