"""URLs of one part of the FX app, added to the project's list by hub/urls.py."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
