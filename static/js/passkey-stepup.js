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

  function toBuffer(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  class ServerRefused extends Error {}

  async function post(url, csrfToken, body) {
    const headers = { "X-CSRFToken": csrfToken, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const isJson = (response.headers.get("content-type") || "").includes("application/json");
    const data = isJson ? await response.json() : null;
    if (!data) {
      throw new ServerRefused(
        response.redirected
          ? "Your session has ended. Reload the page and sign in again."
          : "The server could not check the passkey just now."
      );
    }
    if (!response.ok) throw new ServerRefused(data.detail || "The server did not accept the passkey.");
    return data;
  }

  function browserMessage(error) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "AbortError":
        return "The passkey was not used: the request was cancelled, timed out or refused by the browser.";
      case "SecurityError":
        return "The browser refused passkeys for this address (they need HTTPS, or localhost).";
      default:
        return "The browser could not use a passkey" + (error && error.name ? " (" + error.name + ")." : ".");
    }
  }

  function say(button, text, kind) {
    const status = document.getElementById(button.dataset.status);
    status.textContent = text;
    status.className = "passkey-status " + kind;
    status.hidden = false;
  }

  async function confirmWithPasskey(button) {
    const form = button.form;
    const nonceInput = form.querySelector("input[data-passkey-stepup]");
    button.disabled = true;
    say(button, "Follow your browser's prompt to use your passkey\u2026", "busy");
    let options;
    try {
      options = await post(button.dataset.beginUrl, button.dataset.csrf);
    } catch (error) {
      button.disabled = false;
      return say(button, error.message + " Or enter a code.", "error");
    }
    let assertion;
    try {
      options.challenge = toBuffer(options.challenge);
      (options.allowCredentials || []).forEach((c) => (c.id = toBuffer(c.id)));
      assertion = await navigator.credentials.get({ publicKey: options });
    } catch (error) {
      button.disabled = false;
      return say(button, browserMessage(error) + " Try again, or enter a code.", "error");
    }
    let result;
    try {
      result = await post(button.dataset.completeUrl, button.dataset.csrf, {
        id: assertion.id,
        rawId: toBase64url(assertion.rawId),
        type: assertion.type,
        response: {
          clientDataJSON: toBase64url(assertion.response.clientDataJSON),
          authenticatorData: toBase64url(assertion.response.authenticatorData),
          signature: toBase64url(assertion.response.signature),
          userHandle: assertion.response.userHandle ? toBase64url(assertion.response.userHandle) : null,
        },
        clientExtensionResults: assertion.getClientExtensionResults(),
        authenticatorAttachment: assertion.authenticatorAttachment,
      });
    } catch (error) {
      button.disabled = false;
      return say(button, "That passkey was not accepted: " + error.message + " Try again, or enter a code.", "error");
    }
    say(button, "Passkey accepted.", "busy");
    nonceInput.value = result.nonce;
    // The form's own submit button, so its name and value (approve, for one) go with it.
    form.requestSubmit(form.querySelector("button[type=submit]"));
    // The form data is taken when it is submitted: the nonce, spent by that request, is not kept on the page
    // (an export downloads a file and stays here).
    nonceInput.value = "";
    button.disabled = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    const supported = !!(window.PublicKeyCredential && navigator.credentials);
    document.querySelectorAll("button[data-passkey-stepup-button]").forEach(function (button) {
      if (!supported) {
        button.disabled = true;
        return say(button, "This browser cannot use passkeys: enter a code.", "error");
      }
      button.addEventListener("click", function () {
        confirmWithPasskey(button);
      });
    });
  });
})();
