"""Opt-in open and click tracking, mounted at /t/. Public: a signed token naming one delivery is the credential."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
