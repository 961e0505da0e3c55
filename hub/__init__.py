"""Financial services and settlement hub for China-Korea cross-border e-commerce."""

from hub.celery_app import app as celery_app

__all__ = ["celery_app"]
