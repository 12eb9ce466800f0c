"""The WSGI application gunicorn serves (Procfile, gunicorn.conf.py). Production settings unless
DJANGO_SETTINGS_MODULE says otherwise; a missing secret stops the server with a clear message (hipaamail/startup.py)."""
from django.core.wsgi import get_wsgi_application

from hipaamail.startup import settings_load

settings_load()
application = get_wsgi_application()
