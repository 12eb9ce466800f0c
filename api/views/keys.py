"""API keys in the browser: list (with state and last use), create (the secret shown once), revoke.
Administrators only (api.permissions)."""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from api.forms.keys import ApiKeyCreateForm
from api.keys import TOKEN_PREFIX, api_key_create, api_key_revoke, api_key_state
from api.models import ApiKey
from api.permissions import access_api_key_by_id, access_integrations
from api.scopes import SCOPES


@require_safe
def key_list(request):
    access_integrations(request.user)
    keys = list(ApiKey.objects.select_related("created_by").order_by("-created_at"))
    for key in keys:
        key.state = api_key_state(key)
    return render(
        request,
        "api/key_list.html",
        {"keys": keys, "scopes": SCOPES, "docs_url": reverse("api-v1:openapi-view"), "token_prefix": TOKEN_PREFIX},
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def key_create(request):
    access_integrations(request.user)
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                source=form.cleaned_data["source"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            # The token is rendered once, here, and never again: it is not stored. The command to try it is code,
            # not words to translate, so it is put together here.
            base_url = request.build_absolute_uri("/api/v1/")
            return render(
                request,
                "api/key_created.html",
                {
                    "key": issued.key,
                    "token": issued.token,
                    "scopes": SCOPES,
                    "base_url": base_url,
                    "try_command": f'curl -H "Authorization: Bearer {issued.token}" {base_url}purposes',
                },
            )
    return render(request, "api/key_form.html", {"form": form})


@require_POST
def key_revoke(request, key_id: int):
    key = access_api_key_by_id(request.user, key_id)
    api_key_revoke(actor=request.user, api_key_id=key.pk)
    messages.success(
        request, _("The key “%(name)s” is revoked: the next call made with it is refused.") % {"name": key.name}
    )
    return redirect("integrations:key_list")
