"""Test-only views for the observability tests: one that logs, one that fails with a patient's details everywhere
an error report could pick them up (its body, query string, cookies, headers, locals, log lines, exception text).
The real middleware stack runs in front of them (the request id, deny by default: both are marked public)."""
import logging

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from accounts.access import public

logger = logging.getLogger("hipaamail.tests.observability")


def logging_view(request):
    logger.info("a line logged while serving a request")
    return HttpResponse("logged")


@csrf_exempt
def failing_view(request):
    patient_name = request.POST["full_name"]
    patient_email = request.POST["email"]
    record_number = request.POST["external_id"]
    looked_up = request.GET.get("lookup", "")
    logger.warning("looking up %s (%s)", patient_email, record_number)  # a breadcrumb, with its arguments
    logger.error("no patient named %s", patient_name)  # an error event of its own, with its arguments
    raise ValueError(f"no patient {patient_name} <{patient_email}> with record {record_number} ({looked_up})")


urlpatterns = [
    path("observability/logs", public(logging_view), name="observability-logs"),
    path("observability/fail", public(failing_view), name="observability-fail"),
]
