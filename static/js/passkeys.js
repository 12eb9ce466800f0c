// Passkeys as a second factor (R-SEC-MFA): the browser side of django-otp-webauthn's JSON endpoints.
//
// <form data-passkey="add" ...> on the devices page registers a passkey under the name typed in it;
// <button data-passkey="verify" ...> on the two-factor page uses one. Each names its endpoints, the CSRF token and
// its status element in data- attributes. Every failure ends in a sentence in the status element, never a dead
// button: the person cancelled, the browser refused, the server did not accept the passkey.
(function () {
  "use strict";

  const { supported, toBuffer, toBase64url, post, browserMessage, say, assertionGet, assertionEncode } =
    window.hipaamailWebAuthn; // static/js/webauthn.js, loaded first

  async function addPasskey(form) {
    const button = form.querySelector("button");
    button.disabled = true;
    say(form, gettext("Follow your browser's prompt to create the passkey…"), "busy");
    let options;
    try {
      options = await post(form.dataset.beginUrl, form.dataset.csrf);
    } catch (error) {
      button.disabled = false;
      return say(form, error.message, "error");
    }
    let credential;
    try {
      options.challenge = toBuffer(options.challenge);
      options.user.id = toBuffer(options.user.id);
      (options.excludeCredentials || []).forEach((c) => (c.id = toBuffer(c.id)));
      credential = await navigator.credentials.create({ publicKey: options });
    } catch (error) {
      button.disabled = false;
      return say(form, browserMessage(error, true), "error");
    }
    try {
      await post(form.dataset.completeUrl, form.dataset.csrf, {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toBase64url(credential.response.clientDataJSON),
          attestationObject: toBase64url(credential.response.attestationObject),
          transports: credential.response.getTransports ? credential.response.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults(),
        authenticatorAttachment: credential.authenticatorAttachment,
        name: form.elements.name.value,
      });
    } catch (error) {
      button.disabled = false;
      return say(form, interpolate(gettext("No passkey was added: %(reason)s"), {reason: error.message}, true), "error");
    }
    window.location.assign(form.dataset.doneUrl);
  }

  async function verifyPasskey(button) {
    button.disabled = true;
    say(button, gettext("Follow your browser's prompt to use your passkey…"), "busy");
    let options;
    try {
      options = await post(button.dataset.beginUrl, button.dataset.csrf);
    } catch (error) {
      button.disabled = false;
      return say(button, error.message, "error");
    }
    let assertion;
    try {
      assertion = await assertionGet(options);
    } catch (error) {
      button.disabled = false;
      const reason = browserMessage(error, false);
      return say(button, interpolate(gettext("%(reason)s Try again, or enter a code below."), {reason}, true), "error");
    }
    let result;
    try {
      const url = new URL(button.dataset.completeUrl, window.location.origin);
      if (button.dataset.next) url.searchParams.set("next", button.dataset.next);
      result = await post(url.toString(), button.dataset.csrf, assertionEncode(assertion));
    } catch (error) {
      button.disabled = false;
      const text = gettext("That passkey was not accepted: %(reason)s Try again, or enter a code below.");
      return say(button, interpolate(text, {reason: error.message}, true), "error");
    }
    window.location.assign(result.redirect_url);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-passkey]").forEach(function (element) {
      if (!supported()) {
        element.querySelectorAll("button").forEach((b) => (b.disabled = true));
        if (element.tagName === "BUTTON") element.disabled = true;
        return say(element, gettext("This browser cannot use passkeys."), "error");
      }
      if (element.dataset.passkey === "add") {
        element.addEventListener("submit", function (event) {
          event.preventDefault();
          addPasskey(element);
        });
      } else if (element.dataset.passkey === "verify") {
        element.addEventListener("click", function () {
          verifyPasskey(element);
        });
      }
    });
  });
})();
