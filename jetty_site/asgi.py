"""ASGI entry point: ``daphne jetty_site.asgi:application`` serves HTTP and WebSockets."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from runs.gateway.asgi import GatewayRouter, OffTheGatewaySocket  # noqa: E402
from trajectories.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The model gateway's hot paths skip Django's request stack; everything else is plain Django (but not over
        # the unix socket sandboxes reach the gateway through: that one serves the model routes only).
        "http": GatewayRouter(fallback=django_asgi),  # type: ignore[arg-type]
        # The UI's live views: signed-in users (session cookie) on this site only, never over the sandbox socket.
        "websocket": OffTheGatewaySocket(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
