import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
application = get_asgi_application()

from config.startup import web_process_started  # noqa: E402 - needs Django set up
from workflows.backpressure import SubmissionShed  # noqa: E402

web_process_started()
# Under overload, a run submission this process cannot take in soon is refused (429) before
# Django spends a thread and a database connection on it (workflows.backpressure).
application = SubmissionShed(application)
