// Passkeys as a second factor (R-SEC-MFA): the browser side of django-otp-webauthn's JSON endpoints.
//
// <form data-passkey="add" ...> on the devices page registers a passkey under the name typed in it;
// <button data-passkey="verify" ...> on the two-factor page uses one. Each names its endpoints, the CSRF token and
// its status element in data- attributes. Every failure ends in a sentence in the status element, never a dead
// button: the person cancelled, the browser refused, the server did not accept the passkey.
(function () {
  "use strict";

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
      // A page instead of JSON: redirected to sign in (the session ended), or the server failed.
      throw new ServerRefused(
        response.redirected
          ? "Your session has ended. Reload the page and sign in again."
          : "The server could not check the passkey just now."
      );
    }
    if (!response.ok) throw new ServerRefused(data.detail || "The server did not accept the passkey.");
    return data;
  }

  function browserMessage(error, adding) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "AbortError":
        return adding
          ? "No passkey was added: the request was cancelled, timed out or refused by the browser."
          : "The passkey was not used: the request was cancelled, timed out or refused by the browser.";
      case "InvalidStateError":
        return "This authenticator already holds a passkey for your account.";
      case "SecurityError":
        return "The browser refused passkeys for this address (they need HTTPS, or localhost).";
      case "NotSupportedError":
        return "This browser or authenticator does not support the kind of passkey asked for.";
      default:
        return "The browser could not use a passkey" + (error && error.name ? " (" + error.name + ")." : ".");
    }
  }

  function say(element, text, kind) {
    const status = document.getElementById(element.dataset.status);
    status.textContent = text;
    status.className = "passkey-status " + kind;
    status.hidden = false;
  }

  async function addPasskey(form) {
    const button = form.querySelector("button");
    button.disabled = true;
    say(form, "Follow your browser's prompt to create the passkey\u2026", "busy");
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
      return say(form, "No passkey was added: " + error.message, "error");
    }
    window.location.assign(form.dataset.doneUrl);
  }

  async function verifyPasskey(button) {
    button.disabled = true;
    say(button, "Follow your browser's prompt to use your passkey\u2026", "busy");
    let options;
    try {
      options = await post(button.dataset.beginUrl, button.dataset.csrf);
    } catch (error) {
      button.disabled = false;
      return say(button, error.message, "error");
    }
    let assertion;
    try {
      options.challenge = toBuffer(options.challenge);
      (options.allowCredentials || []).forEach((c) => (c.id = toBuffer(c.id)));
      assertion = await navigator.credentials.get({ publicKey: options });
    } catch (error) {
      button.disabled = false;
      return say(button, browserMessage(error, false) + " Try again, or enter a code below.", "error");
    }
    let result;
    try {
      const url = new URL(button.dataset.completeUrl, window.location.origin);
      if (button.dataset.next) url.searchParams.set("next", button.dataset.next);
      result = await post(url.toString(), button.dataset.csrf, {
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
      return say(button, "That passkey was not accepted: " + error.message + " Try again, or enter a code below.", "error");
    }
    window.location.assign(result.redirect_url);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const supported = !!(window.PublicKeyCredential && navigator.credentials);
    document.querySelectorAll("[data-passkey]").forEach(function (element) {
      if (!supported) {
        element.querySelectorAll("button").forEach((b) => (b.disabled = true));
        if (element.tagName === "BUTTON") element.disabled = true;
        return say(element, "This browser cannot use passkeys.", "error");
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
