from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from orgs import web as org_views
from runs import views as run_views
from trajectories import views as trajectory_views


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("trajectories.urls")),
    path("api/v1/", include("runs.urls")),
    path("api/v1/", include("evals.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="openapi-schema"), name="api-redoc"),
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
