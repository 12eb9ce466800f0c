"""The access matrix (issue 16, item 1): every URL pattern of the resolver against every kind of caller, with the
expected outcome of each cell in one table (MATRIX below). R-MIN-NECESSARY, R-SEC-MFA, R-NO-PHI-LEAK.

Rows. Every pattern django.urls.get_resolver() holds, walked and filled by hipaamail/tests/url_walk.py (shared with
the headers and methods test), so a view added tomorrow cannot escape: a pattern without a row fails
`test_every_url_pattern_has_a_row_and_every_row_a_pattern`, and the matrix test prints the row's cells as it
observed them (check each before pasting it); a row whose pattern is gone fails too. A row is named by the URL name
(the route when a pattern has none). The integration API has one row per operation (`api-v1:<operationId>`: a GET
and a POST on one path are two rows). Each row is asked with GET when its view serves GET, else with an empty POST
(an API POST with an Idempotency-Key and `{}`), which meets every access check; a page that serves both is also
POSTed by each caller its GET refuses, and must refuse the POST alike. Whatever a request changes is rolled back to
a savepoint before the next, with the caller's cookies and the cache as they were, so no cell depends on another.

Columns, the callers:
  anon   nobody (no cookie, no key)
  A      patient A in the portal (typed the emailed code): owns every patient object the URLs name (the
         authorization, its PDF copy, the invitation link, the delivery behind the unsubscribe and tracking links)
  B      patient B in the portal, asking for patient A's objects: never A's data
  mkt    a marketer, past the second factor
  off    a compliance officer, past the second factor
  adm    an administrator (also the Django admin's superuser), past the second factor
  no2fa  an administrator and superuser signed in with the password, whose second factor is enrolled but not
         entered in this session
  pur:r .. res:r  one API key per scope of api.scopes.SCOPES (purposes:read ... results:read), each on every API
         operation and every browser URL (a key is no session: on a browser URL it gets what nobody gets)

Cells: ok (200), in (redirect to the staff sign-in page), 2fa (redirect to enter or set up the second factor), my-in
(redirect to the portal's sign-in), ad-in (redirect to the Django admin's own sign-in), 302 (the view's own
redirect), or the status code: 401 (no key), 403 (a key without the scope; the Django admin's own refusals), 404 (not
found, or not yours: the same answer), 405 (method not served), 400/410/422 (the view ran and refused the empty
request), 503 (/health/ready: no worker runs here).

PHI. The two patients' names, email addresses, phone numbers, dates of birth, record numbers and street addresses
are distinctive strings (url_walk.PATIENT_A, PATIENT_B). No response body or header (Location included), nor the
mail a request sends to staff (a test send), carries either patient's to anyone but the compliance officer, the
administrator and the keys that may read patient data; patient A's never reaches patient B, nor B's A
(R-NO-PHI-LEAK, R-MIN-NECESSARY: marketers see aggregates only).

Which scopes may read patient data (DESIGN.md: the API serves EHR and CRM systems; api.scopes.SCOPES): patients:read
(a patient's record number and coded attributes), authorizations:read (a patient's authorizations and their
evidence, also as FHIR Consent) and events:read (a patient's care events). Every other scope receives none:
purposes:read (purposes and forms), results:read (delivery status and aggregate results, small cells withheld), and
the writing scopes patients:write, authorizations:write and events:write, which send patient data but get back ids,
statuses and the names of refused fields, never a value (api.scopes.PHI_SCOPES names the scopes that touch PHI at
all).
"""
import copy
import itertools
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils.http import urlencode

from accounts.access import INTEGRATION, PATIENT, SIGNED_IN, STAFF, access_level
from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.main import api
from api.scopes import AUTHORIZATIONS_READ, EVENTS_READ, PATIENTS_READ, SCOPES
from conftest import pdf_text
from hipaamail.middleware import _api_path_view, view_allowed_methods
from hipaamail.tests import url_walk

pytestmark = [pytest.mark.django_db]

# The scopes whose keys may receive patient data (see the docstring).
PATIENT_READING_SCOPES = frozenset({PATIENTS_READ, AUTHORIZATIONS_READ, EVENTS_READ})


def scope_column(scope: str) -> str:
    resource, action = scope.split(":")
    return f"{resource[:3]}:{action[0]}"


PEOPLE = ("anon", "A", "B", "mkt", "off", "adm", "no2fa")
COLUMNS = PEOPLE + tuple(scope_column(scope) for scope in SCOPES)

MATRIX = """
row                                                 anon  A     B     mkt   off   adm   no2fa pur:r pat:r pat:w aut:r aut:w eve:r eve:w res:r
home                                                in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
account_login                                       ok    ok    ok    302   302   302   302   ok    ok    ok    ok    ok    ok    ok    ok
account_logout                                      302   302   302   ok    ok    ok    ok    302   302   302   302   302   302   302   302
account_inactive                                    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_signup                                      ok    ok    ok    302   302   302   302   ok    ok    ok    ok    ok    ok    ok    ok
account_reauthenticate                              in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
account_email                                       in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
account_email_verification_sent                     ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_change_password                             in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
account_set_password                                in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
account_reset_password                              ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_confirm_login_code                          in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
account_confirm_email                               ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_reset_password_from_key_done                ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_reset_password_from_key                     ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
account_reset_password_done                         ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
otp_verify                                          in    in    in    ok    ok    ok    ok    in    in    in    in    in    in    in    in
otp_setup                                           in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
otp_recovery_codes                                  in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
otp_recovery_codes_regenerate                       in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
otp_devices                                         in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
otp_device_remove                                   in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
otp_webauthn:credential-registration-begin          in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
otp_webauthn:credential-registration-complete       in    in    in    400   400   400   2fa   in    in    in    in    in    in    in    in
otp_webauthn:credential-authentication-begin        in    in    in    ok    ok    ok    ok    in    in    in    in    in    in    in    in
otp_webauthn:credential-authentication-complete     in    in    in    400   400   400   400   in    in    in    in    in    in    in    in
otp_webauthn:stepup-begin                           in    in    in    400   400   400   2fa   in    in    in    in    in    in    in    in
otp_webauthn:stepup-complete                        in    in    in    400   400   400   2fa   in    in    in    in    in    in    in    in
campaigns:detail                                    in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:progress                                  in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_new                              in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_preview                          in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_audience_options                 in    in    in    400   400   400   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_edit                             in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_test_send                        in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_submit                           in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:wizard_start                              in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:wizard_purpose                            in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:wizard_audience                           in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:wizard_content                            in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:wizard_review                             in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_duplicate                        in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_delete                           in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_withdraw                         in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_review                           in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_launch_now                       in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_schedule                         in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:campaign_pause                            in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_resume                           in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:campaign_cancel                           in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:review_queue                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:notice_list                               in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:notice_read                               in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
campaigns:notice_open                               in    in    in    404   404   404   2fa   in    in    in    in    in    in    in    in
campaigns:results_csv                               in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:segment_list                              in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:segment_create                            in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:segment_counts                            in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:segment_edit                              in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_library                           in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_template_new                      in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_template_edit                     in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_block_new                         in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_block_edit                        in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
campaigns:content_item_action                       in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:purpose_list                                in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:purpose_create                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:purpose_detail                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:purpose_edit                                in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:form_create                                 in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:form_edit                                   in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:form_preview                                in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:form_publish                                in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:form_translate                              in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:patient_search                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:patient_detail                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:patient_invite                              in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:patient_language                            in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:patient_written_authorization               in    in    in    404   400   400   2fa   in    in    in    in    in    in    in    in
consent:patient_written_revocation                  in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:patient_expiry_event                        in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:patient_defect                              in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:patient_document                            in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:import_upload                               in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:import_detail                               in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:import_start                                in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
consent:import_progress                             in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:event_import                                in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:fhir_import                                 in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
consent:fhir_export                                 in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:list                                       in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:new                                        in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:detail                                     in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:edit                                       in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:submit                                     in    in    in    302   302   302   2fa   in    in    in    in    in    in    in    in
journeys:review                                     in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
journeys:pause                                      in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
journeys:resume                                     in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
journeys:stop                                       in    in    in    404   400   400   2fa   in    in    in    in    in    in    in    in
journeys:results                                    in    in    in    ok    ok    ok    2fa   in    in    in    in    in    in    in    in
audit:log                                           in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
audit:patient_history                               in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
audit:verify                                        in    in    in    404   302   302   2fa   in    in    in    in    in    in    in    in
reports:index                                       in    in    in    404   ok    ok    2fa   in    in    in    in    in    in    in    in
reports:campaign_evidence                           in    in    in    404   400   400   2fa   in    in    in    in    in    in    in    in
reports:patient_ledger                              in    in    in    404   400   400   2fa   in    in    in    in    in    in    in    in
reports:compliance_summary                          in    in    in    404   400   400   2fa   in    in    in    in    in    in    in    in
portal:home                                         my-in ok    ok    my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in
portal:invitation_open                              ok    302   ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
portal:sign_in                                      ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
portal:code                                         ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
portal:sign_out                                     ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
portal:language                                     302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
portal:sign                                         my-in ok    ok    my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in
portal:signed                                       my-in ok    404   my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in
portal:authorization_pdf                            my-in ok    404   my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in
portal:revoke                                       my-in ok    404   my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in my-in
unsubscribe                                         ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
set_language                                        302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
staff_language                                      302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
webhooks:amazon_ses_tracking                        404   404   404   404   404   404   404   404   404   404   404   404   404   404   404
tracking:open                                       ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
tracking:click                                      302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
api-v1:openapi-json                                 ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
api-v1:openapi-view                                 ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
api-v1:patient_upsert                               401   401   401   401   401   401   401   403   403   422   403   403   403   403   403
api-v1:patient_search                               401   401   401   401   401   401   401   403   422   403   403   403   403   403   403
api-v1:patient_get                                  401   401   401   401   401   401   401   403   ok    403   403   403   403   403   403
api-v1:purpose_list                                 401   401   401   401   401   401   401   ok    403   403   403   403   403   403   403
api-v1:authorization_record                         401   401   401   401   401   401   401   403   403   403   403   422   403   403   403
api-v1:authorization_list                           401   401   401   401   401   401   401   403   403   403   ok    403   403   403   403
api-v1:authorization_revocation_record              401   401   401   401   401   401   401   403   403   403   403   422   403   403   403
api-v1:authorization_fhir_bundle                    401   401   401   401   401   401   401   403   403   403   ok    403   403   403   403
api-v1:authorization_get                            401   401   401   401   401   401   401   403   403   403   ok    403   403   403   403
api-v1:authorization_fhir                           401   401   401   401   401   401   401   403   403   403   ok    403   403   403   403
api-v1:event_record                                 401   401   401   401   401   401   401   403   403   403   403   403   403   422   403
api-v1:event_list                                   401   401   401   401   401   401   401   403   403   403   403   403   ok    403   403
api-v1:event_record_batch                           401   401   401   401   401   401   401   403   403   403   403   403   403   422   403
api-v1:event_type_list                              401   401   401   401   401   401   401   403   403   403   403   403   403   ok    403
api-v1:delivery_get                                 401   401   401   401   401   401   401   403   403   403   403   403   403   403   ok
api-v1:campaign_list                                401   401   401   401   401   401   401   403   403   403   403   403   403   403   ok
api-v1:campaign_results                             401   401   401   401   401   401   401   403   403   403   403   403   403   403   ok
api-v1:api-root                                     404   404   404   404   404   404   404   404   404   404   404   404   404   404   404
integrations:key_list                               in    in    in    404   404   ok    2fa   in    in    in    in    in    in    in    in
integrations:key_create                             in    in    in    404   404   ok    2fa   in    in    in    in    in    in    in    in
integrations:key_revoke                             in    in    in    404   404   302   2fa   in    in    in    in    in    in    in    in
integrations:webhook_list                           in    in    in    404   404   ok    2fa   in    in    in    in    in    in    in    in
integrations:webhook_create                         in    in    in    404   404   ok    2fa   in    in    in    in    in    in    in    in
integrations:webhook_delete                         in    in    in    404   404   302   2fa   in    in    in    in    in    in    in    in
integrations:webhook_deliveries                     in    in    in    404   404   ok    2fa   in    in    in    in    in    in    in    in
integrations:webhook_delivery_retry                 in    in    in    404   404   302   2fa   in    in    in    in    in    in    in    in
admin:index                                         in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:login                                         in    in    in    ok    ok    302   2fa   in    in    in    in    in    in    in    in
admin:logout                                        in    in    in    302   302   405   2fa   in    in    in    in    in    in    in    in
admin:password_change                               in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:password_change_done                          in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:autocomplete                                  in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:jsi18n                                        in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:view_on_site                                  in    in    in    ad-in ad-in 404   2fa   in    in    in    in    in    in    in    in
admin:auth_user_password_change                     in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_user_changelist                          in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_user_add                                 in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_user_history                             in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_user_delete                              in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_user_change                              in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin/auth/user/<path:object_id>/                   in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:auth_group_changelist                         in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_group_add                                in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:auth_group_history                            in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:auth_group_delete                             in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:auth_group_change                             in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/auth/group/<path:object_id>/                  in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:account_emailaddress_changelist               in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:account_emailaddress_add                      in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:account_emailaddress_history                  in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:account_emailaddress_delete                   in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:account_emailaddress_change                   in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin/account/emailaddress/<path:object_id>/        in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:sites_site_changelist                         in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:sites_site_add                                in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:sites_site_history                            in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:sites_site_delete                             in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:sites_site_change                             in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/sites/site/<path:object_id>/                  in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_config                    in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_qrcode                    in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_changelist                in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_add                       in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_history                   in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_delete                    in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_totp_totpdevice_change                    in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/otp_totp/totpdevice/<path:object_id>/         in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_static_staticdevice_changelist            in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:otp_static_staticdevice_add                   in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:otp_static_staticdevice_history               in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_static_staticdevice_delete                in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:otp_static_staticdevice_change                in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/otp_static/staticdevice/<path:object_id>/     in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:audit_auditcheckpoint_changelist              in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:audit_auditcheckpoint_add                     in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:audit_auditcheckpoint_history                 in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:audit_auditcheckpoint_delete                  in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:audit_auditcheckpoint_change                  in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/audit/auditcheckpoint/<path:object_id>/       in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:consent_suppression_changelist                in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin:consent_suppression_add                       in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:consent_suppression_history                   in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:consent_suppression_delete                    in    in    in    ad-in ad-in 403   2fa   in    in    in    in    in    in    in    in
admin:consent_suppression_change                    in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin/consent/suppression/<path:object_id>/         in    in    in    ad-in ad-in 302   2fa   in    in    in    in    in    in    in    in
admin:app_list                                      in    in    in    ad-in ad-in ok    2fa   in    in    in    in    in    in    in    in
admin/(?P<url>.*)                                   in    in    in    ad-in ad-in 404   2fa   in    in    in    in    in    in    in    in
metrics                                             404   404   404   404   404   404   404   404   404   404   404   404   404   404   404
favicon                                             302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
demo_outbox                                         in    in    in    404   404   404   2fa   in    in    in    in    in    in    in    in
demo_outbox_message                                 in    in    in    404   404   404   2fa   in    in    in    in    in    in    in    in
health-live                                         ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok    ok
health-ready                                        503   503   503   503   503   503   503   503   503   503   503   503   503   503   503
"""

# The cells a redirect may give, by the URL name it sends the caller to; any other redirect is "302".
REDIRECTS = [("in", "account_login"), ("2fa", "otp_verify"), ("2fa", "otp_setup"), ("my-in", "portal:sign_in"),
             ("ad-in", "admin:login")]
# The cells that refuse a caller.
REFUSED = {"in", "2fa", "my-in", "ad-in", "401", "403", "404"}
# API GET operations that need a query parameter: given patient A's id, so that a key with the scope reads A's data.
API_QUERY = {"api-v1:authorization_list", "api-v1:authorization_fhir_bundle", "api-v1:event_list"}


@dataclass(frozen=True)
class Row:
    name: str  # the table's row: the URL name, the route of an unnamed pattern, api-v1:<operationId>
    level: str  # accounts.access level of the pattern
    method: str  # GET when the view serves it, else POST
    url: str
    posts: bool = False  # a page that serves POST besides GET: a caller GET refuses is refused a POST alike


def _table() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], list[str]]:
    """The header, the rows, and the names written twice."""
    lines = [line.split() for line in MATRIX.strip().splitlines() if line.strip()]
    header, rows, twice = tuple(lines[0][1:]), {}, []
    for name, *cells in lines[1:]:
        if name in rows:
            twice.append(name)
        rows[name] = tuple(cells)
    return header, rows, twice


def _rows(world) -> tuple[list[Row], list[str]]:
    """Every row to ask: the walked URL patterns, the integration API's split into its operations."""
    targets, unfilled = url_walk.targets(world)
    rows = []
    for target in targets:
        path_view = _api_path_view(target.callback)
        if path_view is None:
            methods = view_allowed_methods(target.callback)
            method = "GET" if "GET" in methods else "POST"
            rows.append(Row(target.name, target.level, method, target.url, posts=method == "GET" and "POST" in methods))
            continue
        for operation in path_view.operations:
            name = f"api-v1:{operation.view_func.__name__}"
            url = target.url
            if name in API_QUERY:
                url = f"{url}?{urlencode({'patient_id': world['patient'].pk})}"
            for method in operation.methods:
                rows.append(Row(name, target.level, method, url))
    return rows, unfilled


def _ask(client: Client, row: Row, method: str = ""):
    """One request (the row's method unless another is given), undone afterwards: the database changes it made
    rolled back to a savepoint, the caller's cookies and the cache (throttles, rate limits) as they were. Returns
    the response's cell and its text: the body (a PDF's text), every header, and the mail the request sent to
    anyone but the patients themselves (a test send, a notice to staff)."""
    cookies = copy.deepcopy(client.cookies)
    savepoint = transaction.savepoint()
    cache.clear()
    sent = len(mail.outbox)
    try:
        if (method or row.method) == "GET":
            response = client.get(row.url)
        elif row.level == INTEGRATION:
            response = client.post(row.url, data="{}", content_type="application/json",
                                   headers={"Idempotency-Key": f"matrix-{next(_serial)}"})
        else:
            response = client.post(row.url)
        # Read through: the test client closes a streamed response (a file, a CSV) once its content is consumed.
        content = b"".join(response.streaming_content) if response.streaming else response.content
    finally:
        transaction.savepoint_rollback(savepoint)
        client.cookies = cookies
    if response.get("Content-Type", "").startswith("application/pdf"):
        text = pdf_text(content)
    else:
        text = content.decode("utf-8", "replace")
    text += "\n" + "\n".join(f"{header}: {value}" for header, value in response.items())
    patients = {url_walk.PATIENT_A["email"], url_walk.PATIENT_B["email"]}
    for message in mail.outbox[sent:]:
        if set(message.recipients()) - patients:
            text += f"\n{message.subject}\n{message.body}\n" + "".join(str(part[0]) for part in message.alternatives)
    return _cell(response), text


_serial = itertools.count(1)


def _cell(response) -> str:
    if response.status_code in (301, 302, 303, 307, 308):
        path = urlsplit(response["Location"]).path
        for cell, name in REDIRECTS:
            if path == reverse(name):
                return cell
        return "302"
    return "ok" if response.status_code == 200 else str(response.status_code)


@pytest.fixture
def world(settings, tmp_path, monkeypatch):
    """The shared world (url_walk.world_make), its signed copies in a media folder of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    # No worker runs here: /health/ready would wait a second for their answer to its ping, for every caller. The
    # answer is the same (no queue answers: 503), given at once.
    monkeypatch.setattr("hipaamail.health.worker_queues_answering", lambda *, timeout: set())
    # The API's schema is the same for every caller: built once here, not once for each of the fifteen.
    built = {}
    build = api.get_openapi_schema

    def schema_once(**kwargs):
        key = repr(sorted(kwargs.items()))
        if key not in built:
            built[key] = build(**kwargs)
        return copy.deepcopy(built[key])

    monkeypatch.setattr(api, "get_openapi_schema", schema_once)
    cache.clear()
    return url_walk.world_make()


@pytest.fixture
def callers(world) -> dict[str, Client]:
    """A client for each column."""
    administrator = world["administrator"]
    unverified = staff_make(role="administrator", with_totp=True)
    unverified.is_superuser = True
    unverified.save(update_fields=["is_superuser"])
    clients = {
        "anon": Client(),
        "A": url_walk.portal_client(world["patient"]),
        "B": url_walk.portal_client(world["other_patient"]),
        "mkt": url_walk.staff_client(staff_make(role="marketer", with_totp=True)),
        "off": url_walk.staff_client(world["officer"]),
        "adm": url_walk.staff_client(administrator),
        "no2fa": url_walk.staff_client(unverified, verified=False),
    }
    for scope in SCOPES:
        key = api_key_create(actor=administrator, name=f"Only {scope}", scopes=[scope])
        clients[scope_column(scope)] = url_walk.api_client(key.token)
    assert tuple(clients) == COLUMNS
    return clients


def _forbidden(column: str) -> list[str]:
    """The patient strings this column must never receive."""
    a, b = url_walk.phi_strings(url_walk.PATIENT_A), url_walk.phi_strings(url_walk.PATIENT_B)
    if column in ("off", "adm") or column in {scope_column(s) for s in PATIENT_READING_SCOPES}:
        return []
    return {"A": b, "B": a}.get(column, a + b)


def _leaks(text: str, strings: list[str]) -> list[str]:
    return [string for string in strings if string in text]


def _line(name: str, cells) -> str:
    return f"{name:<52}" + "".join(f"{cell:<6}" for cell in cells).rstrip()


def test_r_min_necessary_r_no_phi_leak_every_url_answers_each_caller_as_the_matrix_says(world, callers):
    """R-MIN-NECESSARY, R-SEC-MFA, R-NO-PHI-LEAK: each cell of MATRIX, asked; and no response carries a patient's
    identifiers to a caller who may not read them."""
    _, table, _ = _table()
    rows, unfilled = _rows(world)
    assert unfilled == []
    forbidden = {column: _forbidden(column) for column in COLUMNS}
    wrong, leaks, unlisted = [], [], []
    for row in rows:
        observed = []
        for column, client in callers.items():
            cell, text = _ask(client, row)
            observed.append(cell)
            leaks.extend(f"{row.method} {row.url} to {column}: {found!r}" for found in _leaks(text, forbidden[column]))
            if row.posts and cell in REFUSED:
                posted, text = _ask(client, row, "POST")
                leaks.extend(f"POST {row.url} to {column}: {found!r}" for found in _leaks(text, forbidden[column]))
                if posted not in (cell, "405"):  # 405: refused before any view runs
                    wrong.append(f"POST {row.url} to {column}: {posted}, where GET is refused with {cell}")
        expected = table.get(row.name)
        if expected is None:
            unlisted.append(_line(row.name, observed))
        elif tuple(observed) != expected:
            wrong.append(f"{row.method} {row.url}\n  expected {_line(row.name, expected)}\n  observed {_line(row.name, observed)}")

    gone = sorted(set(table) - {row.name for row in rows})
    assert not leaks, "patient data in responses:\n" + "\n".join(leaks)
    assert not gone, f"rows of MATRIX whose URL pattern no longer exists (remove them): {gone}"
    assert not unlisted, "rows missing from MATRIX (as observed; check each cell before adding it):\n" + "\n".join(unlisted)
    assert not wrong, "cells that differ from MATRIX:\n" + "\n".join(wrong)


CELLS = {"ok", "in", "2fa", "my-in", "ad-in", "302"}
# Where a marketer never reaches a page (R-MIN-NECESSARY: patient-level evidence, the audit trail, compliance
# reports, keys and webhooks, the Django admin): the page is not found, or the admin asks for its own sign-in.
MARKETER_NEVER = ("consent:", "audit:", "reports:", "integrations:", "admin")
# ... but for the admin's own sign-in form and sign-out, which hold nothing.
ADMIN_SIGN_IN_PAGES = {"admin:login", "admin:logout"}


def _api_operations() -> dict[str, str]:
    """Each integration API operation's row and the scope it declares."""
    operations = {}
    for _, _, pattern in url_walk.patterns():
        path_view = _api_path_view(pattern.callback)
        for operation in path_view.operations if path_view else ():
            scopes = sorted(auth.scope for auth in operation.auth_callbacks)
            operations[f"api-v1:{operation.view_func.__name__}"] = ",".join(scopes)
    return operations


def test_r_sec_mfa_r_min_necessary_the_matrix_itself_keeps_the_rules_of_access():
    """The table cannot drift into a hole by being edited to match one: R-SEC-MFA (no staff page without the second
    factor), a key never opens a browser page, every API operation opens to the one scope it declares and to no
    session, R-MIN-NECESSARY (marketers reach no patient-level page; patient B none of patient A's objects)."""
    header, table, twice = _table()
    levels = {name or route: access_level(pattern.callback) for route, name, pattern in url_walk.patterns()}
    routes = {name or route: route for route, name, _ in url_walk.patterns()}
    operations = _api_operations()
    keys = [column for column in COLUMNS if column not in PEOPLE]
    broken = []

    assert header == COLUMNS
    assert twice == []
    for name, cells in table.items():
        row = dict(zip(COLUMNS, cells))
        if len(cells) != len(COLUMNS) or not all(cell in CELLS or re.fullmatch(r"[1-5]\d\d", cell) for cell in cells):
            broken.append(f"{name}: {len(cells)} cells, or a cell not in the vocabulary")
            continue
        level = INTEGRATION if name in operations else levels.get(name)
        if level in (STAFF, SIGNED_IN) and {row["anon"], row["A"], row["B"]} != {"in"}:
            broken.append(f"{name}: a staff page opens without a staff sign-in")
        if level == STAFF and row["no2fa"] != "2fa":
            broken.append(f"{name}: a staff page without the second factor (R-SEC-MFA)")
        if name in operations:
            scope = scope_column(operations[name])
            if any(row[column] != "401" for column in PEOPLE):
                broken.append(f"{name}: an API operation answers a session or nobody")
            if any(row[column] != "403" for column in keys if column != scope) or row[scope] in ("401", "403"):
                broken.append(f"{name}: an API operation opens to another scope than {operations[name]}")
        elif any(row[column] != row["anon"] for column in keys):
            broken.append(f"{name}: a key opens a browser page (a key is no session)")
        if name.startswith(MARKETER_NEVER) and name not in ADMIN_SIGN_IN_PAGES and row["mkt"] not in ("404", "ad-in"):
            broken.append(f"{name}: a marketer reaches it (R-MIN-NECESSARY)")
        if name.startswith("integrations:") and row["off"] != "404":
            broken.append(f"{name}: keys and webhooks are the administrators' alone")
        if level == PATIENT and "authorization_id" in routes.get(name, "") and row["B"] != "404":
            broken.append(f"{name}: patient B reaches patient A's authorization")

    assert not broken, "\n".join(broken)


def test_every_url_pattern_has_a_row_and_every_row_a_pattern():
    """A view added tomorrow cannot escape the matrix: its pattern (each operation, for the integration API) needs a
    row; a row whose pattern is gone is an error too. The matrix test prints a missing row's cells as observed."""
    _, table, _ = _table()
    operations = _api_operations()
    names = set(operations)
    for route, name, pattern in url_walk.patterns():
        if _api_path_view(pattern.callback) is None:
            names.add(name or route)

    missing, gone = sorted(names - set(table)), sorted(set(table) - names)
    assert (missing, gone) == ([], []), (
        f"URL patterns without a row in MATRIX (hipaamail/tests/test_access_matrix.py): {missing}. Add one row each, "
        "with the outcome every caller must get (the matrix test prints the cells it observes: check each). "
        f"Rows whose URL pattern no longer exists (remove them): {gone}"
    )


def test_r_no_phi_leak_the_search_finds_the_identifiers_where_they_are_shown(world, callers):
    """The search for patient data can fail: read the way the matrix reads them, the pages that may show patient A
    (the compliance officer's patient record, A's own PDF copy, a patients:read key's answer) hold A's
    identifiers, and the search names them."""
    a = url_walk.phi_strings(url_walk.PATIENT_A)
    patient_id, authorization_id = world["patient"].pk, world["authorization"].pk
    _, record = _ask(callers["off"], Row("record", STAFF, "GET", f"/consent/patients/{patient_id}/"))
    _, copy_pdf = _ask(callers["A"], Row("pdf", PATIENT, "GET", f"/my/authorizations/{authorization_id}/pdf/"))
    _, answer = _ask(callers["pat:r"], Row("api", INTEGRATION, "GET", f"/api/v1/patients/{patient_id}"))

    fields = url_walk.PATIENT_A
    assert {fields[field] for field in ("full_name", "email", "phone", "external_id", "street_address")} | {
        fields["birth_date"].isoformat()
    } <= set(_leaks(record, a))
    assert fields["full_name"] in _leaks(copy_pdf, a)  # the PDF's text, not its compressed bytes
    assert _leaks(answer, a) == [fields["external_id"]]  # patients:read: the record number, never a name
    assert _forbidden("mkt") and set(a) <= set(_forbidden("mkt")) and set(a) <= set(_forbidden("B"))


def test_r_no_phi_leak_keys_that_write_patient_data_get_back_no_patient_value(world, callers):
    """The writing scopes send patient data but are not reading scopes: what they get back is ids, statuses and the
    names of refused fields, never a value, whether the write is taken, unchanged or refused (R-NO-PHI-LEAK)."""
    fields = url_walk.PATIENT_A
    a = url_walk.phi_strings(fields)
    same = {key: str(value) for key, value in fields.items()}
    wrong = {**same, "email": fields["email"].replace("@", " at "), "birth_date": "1931-02-30"}
    writes = {
        "unchanged": ("pat:w", "/api/v1/patients/upsert", {"items": [same]}),
        "rejected": ("pat:w", "/api/v1/patients/upsert", {"items": [wrong]}),
        "invalid": ("pat:w", "/api/v1/patients/upsert", {"items": [{**same, "birth_date": "07/19/1931"}]}),
        "unknown purpose": ("aut:w", "/api/v1/authorizations", {
            "patient_id": world["patient"].pk, "purpose": "no-such-purpose", "form_version": 1,
            "signed_at": "2026-01-05T10:00:00+00:00", "signer_name": fields["full_name"],
            "evidence": {"content_type": "application/pdf", "data": "JVBERi0xLjQK"},
        }),
        "unknown patient": ("aut:w", "/api/v1/authorizations/revocations", {
            "patient_id": world["patient"].pk + 1000, "purpose": "no-such-purpose",
        }),
    }
    answers = {}
    for what, (column, url, payload) in writes.items():
        response = callers[column].post(url, data=json.dumps(payload), content_type="application/json",
                                        headers={"Idempotency-Key": f"write-{what}"})
        body = response.json()
        outcome = body["items"][0]["status"] if response.status_code == 200 else body["code"]
        answers[what] = (response.status_code, outcome, _leaks(response.content.decode() + str(response.items()), a))

    assert answers == {
        "unchanged": (200, "unchanged", []),
        "rejected": (200, "rejected", []),
        "invalid": (422, "validation_failed", []),
        "unknown purpose": (422, "unknown_purpose", []),
        "unknown patient": (422, "unknown_patient", []),
    }
