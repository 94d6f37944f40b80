"""The Celery app: ``celery -A jetty_site worker`` and ``celery -A jetty_site beat``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")

app = Celery("jetty_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
