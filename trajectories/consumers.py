"""The run page's WebSocket: it says "there is more" as soon as a run gains events or changes state.

It carries no events itself: the page fetches them from the same ``events?after=`` fragment it polls without a
socket, so a lost notice only delays the page. Only members of the run's org may listen; others are refused the
way a 404 would.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from orgs.models import Membership

from .actions import run_group
from .models import FINAL_STATUSES, Run

NOT_FOUND = 4404


class RunConsumer(AsyncJsonWebsocketConsumer):
    run_id: int | None = None

    @database_sync_to_async
    def _find_run(self, public_id: str) -> int | None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return None
        orgs = Membership.objects.filter(user=user).values("org_id")
        return Run.objects.filter(public_id=public_id, org_id__in=orgs).values_list("pk", flat=True).first()

    @database_sync_to_async
    def _state(self) -> dict[str, Any]:
        assert self.run_id is not None
        run = Run.objects.only("last_seq", "status").get(pk=self.run_id)
        return {"last_seq": run.last_seq, "status": run.status, "final": run.status in FINAL_STATUSES}

    async def connect(self) -> None:
        self.run_id = await self._find_run(self.scope["url_route"]["kwargs"]["public_id"])
        if self.run_id is None:
            await self.close(code=NOT_FOUND)
            return
        await self.channel_layer.group_add(run_group(self.run_id), self.channel_name)
        await self.accept()
        await self.send_json(await self._state())

    async def disconnect(self, code: int) -> None:
        if self.run_id is not None:
            await self.channel_layer.group_discard(run_group(self.run_id), self.channel_name)

    async def run_changed(self, message: dict[str, Any]) -> None:
        await self.send_json(await self._state())
