// The step-up by passkey (R-SEC-MFA): "Confirm with a passkey" on the approve, send, schedule, cancel and export
// forms, instead of typing a code again.
//
// <button type="button" data-passkey-stepup-button data-begin-url data-complete-url data-csrf data-status> inside
// a form that holds <input type="hidden" data-passkey-stepup>: begin (the options for the user's own passkeys),
// navigator.credentials.get, complete (the server checks the assertion and answers a single-use nonce), then the
// nonce goes into the hidden input and the form is submitted with its submit button, as a click on it would.
// Every failure ends in a sentence in the status element; the code field still works. No inline script (CSP):
// everything it needs is in data- attributes. A page may load this file more than once (one include per form).
(function () {
  "use strict";
  if (window.hipaamailPasskeyStepUp) return;
  window.hipaamailPasskeyStepUp = true;

  const { supported, post, browserMessage, say, assertionGet, assertionEncode } = window.hipaamailWebAuthn;

  async function confirmWithPasskey(button) {
    const form = button.form;
    const nonceInput = form.querySelector("input[data-passkey-stepup]");
    button.disabled = true;
    say(button, gettext("Follow your browser's prompt to use your passkey…"), "busy");
    let options;
    try {
      options = await post(button.dataset.beginUrl, button.dataset.csrf);
    } catch (error) {
      button.disabled = false;
      return say(button, interpolate(gettext("%(reason)s Or enter a code."), {reason: error.message}, true), "error");
    }
    let assertion;
    try {
      assertion = await assertionGet(options);
    } catch (error) {
      button.disabled = false;
      const reason = browserMessage(error, false);
      return say(button, interpolate(gettext("%(reason)s Try again, or enter a code."), {reason}, true), "error");
    }
    let result;
    try {
      result = await post(button.dataset.completeUrl, button.dataset.csrf, assertionEncode(assertion));
    } catch (error) {
      button.disabled = false;
      const text = gettext("That passkey was not accepted: %(reason)s Try again, or enter a code.");
      return say(button, interpolate(text, {reason: error.message}, true), "error");
    }
    say(button, gettext("Passkey accepted."), "busy");
    nonceInput.value = result.nonce;
    // The form's own submit button, so its name and value (approve, for one) go with it.
    form.requestSubmit(form.querySelector("button[type=submit]"));
    // The form data is taken when it is submitted: the nonce, spent by that request, is not kept on the page
    // (an export downloads a file and stays here).
    nonceInput.value = "";
    button.disabled = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-passkey-stepup-button]").forEach(function (button) {
      if (!supported()) {
        button.disabled = true;
        return say(button, gettext("This browser cannot use passkeys: enter a code."), "error");
      }
      button.addEventListener("click", function () {
        confirmWithPasskey(button);
      });
    });
  });
})();
