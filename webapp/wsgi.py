import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()

# Every web process (runserver, gunicorn) watches the runs too: with the only worker frozen or gone, nothing
# else would fail its run (training/watchdog.py).
from training.watchdog import watchdog_start  # noqa: E402 - needs the settings configured above

watchdog_start("web")
