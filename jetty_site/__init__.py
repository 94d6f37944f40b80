import os

# litellm fetches its model cost map over the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .celery import app as celery_app

__all__ = ("celery_app",)
