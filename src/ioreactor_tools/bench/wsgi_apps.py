"""The applications ``ioreactor bench wsgi`` serves: a Flask "hello" and a Django JSON view.

Each server under test imports ``ioreactor_tools.bench.wsgi_apps:flask_hello`` or
``:django_json`` (built on first use, so importing this module loads neither framework).
Flask and Django come with ioreactor's ``dev`` extra; :func:`missing_frameworks` names
what is not installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

#: Application name -> the framework it needs.
FRAMEWORKS = {"flask_hello": "flask", "django_json": "django"}


def missing_frameworks(apps: list[str]) -> list[str]:
    """The frameworks ``apps`` need that are not installed."""
    return sorted({FRAMEWORKS[a] for a in apps if importlib.util.find_spec(FRAMEWORKS[a]) is None})


def build_flask_hello() -> Any:
    from flask import Flask

    app = Flask("bench_hello")

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    return app


def build_django_json() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            DATABASES={},
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _urlpatterns() -> list[Any]:
    from django.http import JsonResponse
    from django.urls import path

    def hello(request: Any) -> JsonResponse:
        return JsonResponse({"message": "Hello, World!"})

    return [path("", hello)]


def __getattr__(name: str) -> Any:
    if name == "flask_hello":
        return build_flask_hello()
    if name == "django_json":
        return build_django_json()
    if name == "urlpatterns":  # Django's ROOT_URLCONF is this module
        return _urlpatterns()
    raise AttributeError(name)
