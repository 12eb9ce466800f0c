# hipaamail: one image for every process (web, both workers, beat); compose.yaml and docs/deployment.md run it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=hipaamail.settings.production \
    HIPAAMAIL_VAR_DIR=/app/var

# WeasyPrint's system libraries (Pango with HarfBuzz and FreeType, fontconfig) and fonts for the PDF copies and
# reports, from Debian. psycopg[binary] and the other wheels bring their own.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 libharfbuzz0b libfontconfig1 \
        fonts-dejavu-core fonts-liberation shared-mime-info \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
# --no-deps --require-hashes: exactly the locked set (see scripts/ensure-venv for why --no-deps), then pip check.
RUN pip install --no-deps --require-hashes -r requirements.txt && pip check

COPY . .

# A user of its own: the processes never run as root. var/ holds the collected static files (read-only for it),
# the beat schedule and, on a volume, media (signed PDFs and scans).
RUN groupadd --system hipaamail \
    && useradd --system --gid hipaamail --home-dir /app --no-create-home --shell /usr/sbin/nologin hipaamail \
    && mkdir -p /app/var/media

# The static files are collected once, into the image. collectstatic reads no secret, but the production settings
# refuse to load without their variables: these placeholders exist for this one command and are not kept in the
# image (a RUN's environment is not).
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=build.hipaamail.org SITE_URL=https://build.hipaamail.org \
    DATABASE_URL=postgres://build@127.0.0.1:9/build CELERY_BROKER_URL=redis://127.0.0.1:9/0 \
    CACHE_URL=redis://127.0.0.1:9/1 FIELD_ENCRYPTION_KEYS=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA \
    IDENTIFIER_HASH_KEY=collectstatic-only AUDIT_CHECKPOINT_KEYS=collectstatic-only-collectstatic-only-collectstatic \
    DEFAULT_FROM_EMAIL=build@build.hipaamail.org EMAIL_HOST=127.0.0.1 \
    python manage.py collectstatic --noinput -v 1 \
    && chown -R hipaamail:hipaamail /app/var/media \
    && chown hipaamail:hipaamail /app/var

USER hipaamail
EXPOSE 8000
# The web process by default; compose.yaml gives the workers and beat their commands (the Procfile's).
CMD ["gunicorn", "hipaamail.wsgi:application"]
