// What the passkey scripts share (passkeys.js: add a passkey, sign in with one; passkey-stepup.js: confirm an
// action with one): base64url <-> bytes, a JSON POST with the CSRF token, the sentences for the browser's and
// the server's refusals, and the encoding of an assertion for django-otp-webauthn's endpoints. Load it before
// them (all deferred, so in order). No inline script anywhere (the site's Content-Security-Policy).
(function () {
  "use strict";
  if (window.hipaamailWebAuthn) return;

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
          ? gettext("Your session has ended. Reload the page and sign in again.")
          : gettext("The server could not check the passkey just now.")
      );
    }
    if (!response.ok) throw new ServerRefused(data.detail || gettext("The server did not accept the passkey."));
    return data;
  }

  function browserMessage(error, adding) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "AbortError":
        return adding
          ? gettext("No passkey was added: the request was cancelled, timed out or refused by the browser.")
          : gettext("The passkey was not used: the request was cancelled, timed out or refused by the browser.");
      case "InvalidStateError":
        return gettext("This authenticator already holds a passkey for your account.");
      case "SecurityError":
        return gettext("The browser refused passkeys for this address (they need HTTPS, or localhost).");
      case "NotSupportedError":
        return gettext("This browser or authenticator does not support the kind of passkey asked for.");
      default:
        return error && error.name
          ? interpolate(gettext("The browser could not use a passkey (%(error)s)."), {error: error.name}, true)
          : gettext("The browser could not use a passkey.");
    }
  }

  function say(element, text, kind) {
    const status = document.getElementById(element.dataset.status);
    status.textContent = text;
    status.className = "passkey-status " + kind;
    status.hidden = false;
  }

  // navigator.credentials.get for the server's assertion options (base64url decoded first).
  function assertionGet(options) {
    options.challenge = toBuffer(options.challenge);
    (options.allowCredentials || []).forEach((c) => (c.id = toBuffer(c.id)));
    return navigator.credentials.get({ publicKey: options });
  }

  // An assertion as the endpoints read it.
  function assertionEncode(assertion) {
    return {
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
    };
  }

  window.hipaamailWebAuthn = {
    supported: () => !!(window.PublicKeyCredential && navigator.credentials),
    toBuffer,
    toBase64url,
    post,
    browserMessage,
    say,
    assertionGet,
    assertionEncode,
  };
})();
