import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
application = get_asgi_application()

from config.startup import web_process_started  # noqa: E402 - needs Django set up

web_process_started()
