from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from orgs import web as org_views
from runs import views as run_views
from trajectories import views as trajectory_views


def healthz(request: HttpRequest) -> JsonResponse:
    """Whether this web process can reach what it needs: the database, and Redis when configured (503 if not)."""
    from django.conf import settings
    from django.db import connection

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: the answer is the check
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"ok": ok, "checks": checks}, status=200 if ok else 503)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("trajectories.urls")),
    path("api/v1/", include("runs.urls")),
    path("api/v1/", include("evals.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="openapi-schema"),
    # Swagger UI's set-up script is served as a file of its own (the split view), so the page needs no inline script.
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="openapi-schema"), name="api-docs"),
    # Redoc builds its search index in a blob: worker and shows its maker's logo from their CDN (an image only).
    path(
        "api/redoc",
        csp_update({"worker-src": ["'self'", "blob:"], "img-src": ["https://cdn.redoc.ly"]})(
            SpectacularRedocView.as_view(url_name="openapi-schema")
        ),
        name="api-redoc",
    ),
    path("healthz", healthz),
    # The web UI.
    path("", RedirectView.as_view(url="/runs/", permanent=False)),
    path("login/", org_views.Login.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("switch-org/", org_views.switch_org, name="switch-org"),
    path("runs/", trajectory_views.runs_table, name="ui-runs"),
    path("runs/<str:public_id>/", run_views.run_page, name="ui-run"),
    path("runs/<str:public_id>/header", run_views.run_header, name="ui-run-header"),
    path("runs/<str:public_id>/cancel", run_views.run_cancel, name="ui-run-cancel"),
    path("runs/<str:public_id>/replay", run_views.run_replay, name="ui-run-replay"),
    path("runs/<str:public_id>/fork", run_views.run_fork, name="ui-run-fork"),
    path("runs/<str:public_id>/fork-form", run_views.fork_form, name="ui-run-fork-form"),
    path("runs/<str:public_id>/blobs/<str:sha256>", trajectory_views.run_blob, name="ui-run-blob"),
    path("runs/<str:public_id>/files/<path:path>", run_views.artifact_download, name="ui-run-file"),
    path("runs/<str:public_id>/events", trajectory_views.run_events, name="ui-run-events"),
    path("runs/<str:public_id>/events/<int:seq>", trajectory_views.event_detail, name="ui-run-event"),
    path("runs/<str:public_id>/search", trajectory_views.run_search, name="ui-run-search"),
    path("compare/", trajectory_views.compare_runs, name="ui-compare"),
    path("collections/", run_views.collections, name="ui-collections"),
    path("collections/<str:collection>/<str:name>/", run_views.task_page, name="ui-task"),
    path("collections/<str:collection>/<str:name>/run", run_views.task_run, name="ui-task-run"),
    path("", include("evals.web_urls")),
]
