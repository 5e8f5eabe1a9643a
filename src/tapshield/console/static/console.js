// tapshield console: live refresh (server-sent events), incident actions, passkeys.
// Plain JavaScript, no dependency: the console runs on isolated networks.
"use strict";

function b64urlToBuf(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  const bin = atob(s), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}
function bufToB64url(buf) {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function credentialJSON(cred) {
  const r = cred.response, out = {id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    response: {clientDataJSON: bufToB64url(r.clientDataJSON)}};
  if (r.attestationObject) {
    out.response.attestationObject = bufToB64url(r.attestationObject);
    if (r.getTransports) out.response.transports = r.getTransports();
  } else {
    out.response.authenticatorData = bufToB64url(r.authenticatorData);
    out.response.signature = bufToB64url(r.signature);
    out.response.userHandle = r.userHandle ? bufToB64url(r.userHandle) : null;
  }
  if (cred.authenticatorAttachment) out.authenticatorAttachment = cred.authenticatorAttachment;
  return out;
}
function showError(msg) {
  const el = document.getElementById("passkey-error");
  if (el) { el.textContent = msg; el.hidden = false; }
}

async function passkeyLogin(btn) {
  try {
    const opts = await (await fetch("/console/passkeys/login/options", {method: "POST"})).json();
    const cred = await navigator.credentials.get({publicKey: {
      challenge: b64urlToBuf(opts.challenge), rpId: opts.rpId, timeout: opts.timeout,
      userVerification: opts.userVerification, allowCredentials: []}});
    const res = await fetch("/console/passkeys/login/verify", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({credential: credentialJSON(cred), next: btn.dataset.next})});
    const doc = await res.json();
    if (doc.ok) { window.location.assign(doc.next); } else { showError(doc.error); }
  } catch (e) { showError(String(e)); }
}

async function passkeyRegister(btn) {
  try {
    const headers = {"X-CSRF-Token": btn.dataset.csrf, "Content-Type": "application/json"};
    const res = await fetch("/console/passkeys/register/options", {method: "POST", headers});
    const opts = await res.json();
    if (!res.ok) { showError(opts.error || res.statusText); return; }
    const cred = await navigator.credentials.create({publicKey: {
      challenge: b64urlToBuf(opts.challenge), rp: opts.rp,
      user: {id: b64urlToBuf(opts.user.id), name: opts.user.name, displayName: opts.user.displayName},
      pubKeyCredParams: opts.pubKeyCredParams, timeout: opts.timeout,
      excludeCredentials: (opts.excludeCredentials || []).map(c => ({type: c.type, id: b64urlToBuf(c.id)})),
      authenticatorSelection: opts.authenticatorSelection, attestation: opts.attestation}});
    const done = await fetch("/console/passkeys/register/verify", {method: "POST", headers,
      body: JSON.stringify({credential: credentialJSON(cred), name: navigator.platform || ""})});
    const doc = await done.json();
    if (doc.ok) { window.location.reload(); } else { showError(doc.error); }
  } catch (e) { showError(String(e)); }
}

async function act(form, action) {
  const out = form.querySelector(".result");
  const body = {note: form.note.value, assignee: form.assignee.value, minutes: form.minutes.value};
  const res = await fetch(`/console/incidents/${encodeURIComponent(form.dataset.incident)}/${action}`, {
    method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf},
    body: JSON.stringify(body)});
  let doc = {};
  try { doc = await res.json(); } catch (e) { doc = {error: res.statusText}; }
  out.textContent = res.ok ? out.dataset.done : `${out.dataset.failed}: ${doc.error || doc.detail || res.status}`;
  if (res.ok) { form.note.value = ""; refresh(); }
}

let fragment = null;
async function refresh() {
  if (!fragment) return;
  const res = await fetch(fragment, {headers: {"Accept": "text/html"}});
  if (!res.ok) return;
  const html = await res.text();
  const live = document.getElementById("live");
  const focused = document.activeElement && document.activeElement.id;
  const saved = {};
  live.querySelectorAll("input, textarea").forEach(el => { if (el.id) saved[el.id] = el.value; });
  live.innerHTML = html;
  Object.entries(saved).forEach(([id, v]) => { const el = document.getElementById(id); if (el) el.value = v; });
  if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
  wire(live);
  document.body.dataset.refreshed = String(Date.now());
}

function wire(root) {
  root.querySelectorAll("form.actions").forEach(form => {
    form.querySelectorAll("button[data-action]").forEach(b =>
      b.addEventListener("click", () => act(form, b.dataset.action)));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const login = document.getElementById("passkey-login");
  if (login) login.addEventListener("click", () => passkeyLogin(login));
  const reg = document.getElementById("passkey-register");
  if (reg) reg.addEventListener("click", () => passkeyRegister(reg));
  wire(document);
  const live = document.querySelector(".live[data-stream]");
  if (live && window.EventSource) {
    fragment = live.dataset.fragment;
    const text = live.querySelector(".live-text");
    let first = true;
    const es = new EventSource(live.dataset.stream);
    es.addEventListener("change", () => { if (first) { first = false; return; } refresh(); });
    es.onopen = () => { live.classList.remove("off"); text.textContent = text.dataset.live; };
    es.onerror = () => { live.classList.add("off"); text.textContent = text.dataset.off; };
  }
});
