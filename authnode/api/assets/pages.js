// The hosted pages' only script: passkeys (WebAuthn has no form-only way). Loaded from
// /assets/pages.js under a CSP that allows no inline script. Every element it drives
// carries data-* attributes written by the server; every URL it calls is this service's.
"use strict";

const JSON_HEADERS = {"Content-Type": "application/json"};

function show(button, text) {
  const out = document.getElementById(button.dataset.status);
  if (out) { out.textContent = text; }
}

async function postJson(path, body, token) {
  const headers = token ? {...JSON_HEADERS, "Authorization": "Bearer " + token} : JSON_HEADERS;
  const answer = await fetch(path, {method: "POST", headers, credentials: "same-origin",
                                    body: JSON.stringify(body || {})});
  const data = answer.status === 204 ? {} : await answer.json();
  if (!answer.ok) {
    throw new Error((data.error && data.error.message) || ("HTTP " + answer.status));
  }
  return data;
}

async function signInWithPasskey(button) {
  const base = button.dataset.api;
  const mfaToken = button.dataset.mfaToken;
  const optionsPath = mfaToken ? "/v1/auth/mfa/webauthn/options" : "/v1/auth/passkey/options";
  const answerPath = mfaToken ? "/v1/auth/mfa/webauthn" : "/v1/auth/passkey";
  const options = await postJson(base + optionsPath, mfaToken ? {mfa_token: mfaToken} : {});
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const body = {credential: credential.toJSON(), transport: "cookie"};
  if (mfaToken) { body.mfa_token = mfaToken; }
  await postJson(base + answerPath, body);
  window.location.assign(button.dataset.next);
}

async function addPasskey(button) {
  const base = button.dataset.api;
  // The access token of this browser session, from its HttpOnly refresh cookie.
  const tokens = await postJson(base + "/v1/auth/refresh", {});
  const token = tokens.access_token;
  const options = await postJson(base + "/v1/mfa/webauthn/register/options", {}, token);
  const credential = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  const name = document.getElementById("passkey-name");
  await postJson(base + "/v1/mfa/webauthn/register",
                 {credential: credential.toJSON(), name: name ? name.value : null}, token);
  window.location.assign(button.dataset.next);
}

const ACTIONS = {"passkey-login": signInWithPasskey, "passkey-add": addPasskey};

document.addEventListener("DOMContentLoaded", () => {
  if (!window.PublicKeyCredential) { return; }
  for (const button of document.querySelectorAll("button[data-action]")) {
    const action = ACTIONS[button.dataset.action];
    if (!action) { continue; }
    button.hidden = false;
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      button.disabled = true;
      show(button, "");
      try {
        await action(button);
      } catch (error) {
        show(button, error.message || String(error));
      } finally {
        button.disabled = false;
      }
    });
  }
});
