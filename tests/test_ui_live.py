"""The run page's WebSocket: members of the run's org hear "there is more" when events are appended or the run
moves; anyone else is refused as a 404 would."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from jetty_site.asgi import application
from tests.factories import make_run
from trajectories.actions import EventRecord, append_events
from trajectories.consumers import NOT_FOUND
from trajectories.routing import websocket_urlpatterns


def communicator(run, user) -> WebsocketCommunicator:
    from channels.routing import URLRouter

    socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run.public_id}/")
    socket.scope["user"] = user
    return socket


def test_a_member_hears_of_new_events(alice):
    run = make_run(alice.org, status="running", events=2)

    async def listen() -> list[dict]:
        socket = communicator(run, alice.viewer)
        connected, _ = await socket.connect()
        assert connected
        first = await socket.receive_json_from(timeout=5)
        from channels.db import database_sync_to_async

        await database_sync_to_async(append_events)(run.pk, [EventRecord(kind="log", ts=1.0, payload={"n": 1})])
        second = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return [first, second]

    first, second = async_to_sync(listen)()
    assert first == {"last_seq": 2, "status": "running", "final": False}
    assert second["last_seq"] == 3


def test_it_refuses_outsiders_and_strangers(alice, bob):
    run = make_run(alice.org, events=1)

    async def refused(user) -> int | None:
        socket = communicator(run, user)
        connected, code = await socket.connect()
        assert not connected
        return code

    assert async_to_sync(refused)(bob.owner) == NOT_FOUND
    assert async_to_sync(refused)(AnonymousUser()) == NOT_FOUND


def test_the_site_routes_websockets_through_the_session(alice):
    run = make_run(alice.org, events=1)

    async def anonymous() -> bool:
        socket = WebsocketCommunicator(application, f"/ws/runs/{run.public_id}/", headers=[(b"host", b"localhost")])
        connected, _ = await socket.connect()
        return connected

    assert async_to_sync(anonymous)() is False
