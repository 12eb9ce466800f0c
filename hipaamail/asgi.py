"""The ASGI application. Production settings unless DJANGO_SETTINGS_MODULE says otherwise; a missing secret stops
the server with a clear message (hipaamail/startup.py)."""
from django.core.asgi import get_asgi_application

from hipaamail.startup import settings_load

settings_load()
application = get_asgi_application()
