"""What an API key may do. A key holds a list of these codes; every operation names the one it needs
(api.auth.KeyAuth). Deny by default: an operation without a scope is unreachable with any key."""
from django.utils.translation import gettext_lazy as _

PATIENTS_READ = "patients:read"
PATIENTS_WRITE = "patients:write"
AUTHORIZATIONS_READ = "authorizations:read"
AUTHORIZATIONS_WRITE = "authorizations:write"
EVENTS_READ = "events:read"
EVENTS_WRITE = "events:write"
RESULTS_READ = "results:read"
PURPOSES_READ = "purposes:read"

SCOPES = {
    PURPOSES_READ: _("Read purposes and their current form versions"),
    PATIENTS_READ: _("Look up patients (coded attributes and record numbers, never names or addresses)"),
    PATIENTS_WRITE: _("Create and update patients (nightly sync)"),
    AUTHORIZATIONS_READ: _("Read a patient's authorizations, also as FHIR Consent"),
    AUTHORIZATIONS_WRITE: _("Record authorizations signed elsewhere and revocations"),
    EVENTS_READ: _("List care events"),
    EVENTS_WRITE: _("Post care events (appointments, deliveries, refills)"),
    RESULTS_READ: _("Read delivery status and campaign results (aggregate, small cells withheld)"),
}

# Scopes that let a key read or write a patient's protected health information (the access matrix of issue 16
# uses this: a key without one never receives PHI).
PHI_SCOPES = frozenset({PATIENTS_READ, PATIENTS_WRITE, AUTHORIZATIONS_READ, AUTHORIZATIONS_WRITE, EVENTS_READ})
