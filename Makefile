# hipaamail. Extra pytest arguments: make test ARGS="-k unsubscribe -x"
.PHONY: run test test-workers test-browser test-faults test-history test-multihost test-production venv

# The zero-service demo: web on http://127.0.0.1:8000/, a Celery worker and beat; SQLite, filesystem broker,
# messages in var/outbox/; demo data and logins printed. Ctrl-C stops everything.
run:
	scripts/run-demo

# The whole suite but the slow ones below, against PostgreSQL and Redis (started when they are not answering).
test:
	scripts/test $(ARGS)

# The tests that start real Celery worker processes (the sender, journeys, webhooks, readiness; about four minutes).
test-workers:
	TEST_MARKERS="worker and not browser" scripts/test $(ARGS)

# The browser tests, in Debian's Chromium (installed when missing).
test-browser:
	scripts/test-browser $(ARGS)

# The fault suites: real workers killed, the broker's queue lost, database connections cut, and a mail server
# that refuses, stalls and cuts, and a worker whose clock is wrong (campaigns/tests/test_smtp_faults.py); about four minutes.
test-faults:
	TEST_MARKERS=faults scripts/test $(ARGS)

# The history checker: random launches, revocations, expiries, kills and throttling against real workers and an
# SMTP server; each run's recorded history is checked (no send after a revocation or expiry; ADR 0010).
test-history:
	TEST_MARKERS=history scripts/test $(ARGS)

# Many machines (docs/scaling.md): three worker hosts in network namespaces (process groups where namespaces are
# unavailable) send 50,000 messages while one is lost; two beats, one schedules; the rate limit on RabbitMQ.
test-multihost:
	TEST_MARKERS=multihost scripts/test $(ARGS)

# The production smoke test (docs/deployment.md's native steps): the production settings with secrets made for the
# run, gunicorn over HTTPS, both workers and beat, mail over STARTTLS verified against a CA made for the run, a
# campaign sent, a patient signing in Chromium (about two minutes).
test-production:
	TEST_MARKERS=production scripts/test $(ARGS)

# .venv with requirements-dev.txt, reinstalled when a requirements file changes.
venv:
	scripts/ensure-venv
