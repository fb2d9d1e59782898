"""WSGI entry point for gunicorn in production: `gunicorn 'mvne.platform.wsgi:app'`."""

from __future__ import annotations

from mvne.platform.app import create_app

app = create_app()
