// Signed-in pages: dashboard, API keys, reporting (form and CSV upload),
// alerts with their delivery log, the privacy centre and sessions.

import { h, api, route, navigate, onSubmit, field, state, loadMe, toast, fmtDate, missing, unavailable, copyButton, table, confirmDialog, ApiError, cookie } from "./core.js";
import { meter } from "./charts.js";
import { looksLikeIp } from "./public.js";

const AUTH = { auth: true };

function needKey(page) {
  page.append(h("p", { class: "notice" }, "Reports and alerts are counted against one of your API keys. ", h("a", { href: "/keys" }, "Create an API key"), " first."));
}

route("/dashboard", async (page) => {
  const me = state.me;
  page.append(h("h1", {}, `Hello, ${me.firstName || me.username}`));
  if (!me.emailVerified) page.append(h("p", { class: "notice" }, "Confirm your e-mail address with the link we sent you before creating API keys."));
  const d = await api("GET", "/v1/ui/dashboard");
  page.append(h("p", {}, "Tier: ", h("strong", {}, d.tier.name || d.tier.id)));
  const quotas = h("section", { class: "card" }, h("h2", {}, "Today's quota use"));
  if (!d.keys.length) quotas.append(h("p", { class: "muted" }, "No API keys yet. ", h("a", { href: "/keys" }, "Create one"), "."));
  for (const k of d.keys) {
    quotas.append(h("h3", {}, `${k.name} `, h("code", {}, k.prefix + "…")),
      ...Object.entries(k.quotas).map(([b, q]) => meter(b, q.used, q.limit)));
  }
  quotas.append(h("p", { class: "muted small" }, "Quotas reset at 00:00 UTC."));
  page.append(quotas);
  if (d.alerts) {
    page.append(h("section", { class: "card" }, h("h2", {}, "Alerts"),
      Object.entries(d.alerts).map(([k, a]) => meter(`${k} alerts`, a.current, a.limit)),
      h("p", {}, h("a", { href: "/alerts" }, "Manage alerts"))));
  }
  const recent = h("section", { class: "card" }, h("h2", {}, "Recent activity"));
  page.append(recent);
  try {
    const del = await api("GET", "/v1/ui/alerts/deliveries");
    recent.append(table(["When", "Channel", "Status"], del.deliveries.slice(0, 5).map((x) => [fmtDate(x.createdAt), `${x.channel} → ${x.target}`, x.status]), "No alert deliveries yet."));
  } catch (e) {
    recent.append(h("p", { class: "muted" }, e.status === 403 ? "Create an API key to see alert activity." : e.message));
  }
  recent.append(h("p", {}, h("a", { href: "/report" }, "Report an IP"), " · ", h("a", { href: "/sessions" }, "Your sessions")));
}, { ...AUTH, title: "Dashboard" });

route("/keys", async (page) => {
  page.append(h("h1", {}, "API keys"),
    h("p", {}, "Use a key as ", h("code", {}, "Authorization: Bearer sk_…"), " with the API, TAXII and block lists. A key is shown once, when it is created; we keep only a keyed hash."));
  const created = h("div", { "aria-live": "polite" });
  const list = h("div");
  const form = h("form", { class: "row-form" },
    field("Name of the new key", "name", { required: true, maxlength: 64, placeholder: "firewall-1" }),
    h("button", { type: "submit" }, "Create key"));
  page.append(onSubmit(form, async (v) => {
    const k = await api("POST", "/v1/account/keys", v);
    form.reset();
    const code = h("code", { class: "secret", id: "new-key" }, k.key);
    created.replaceChildren(h("div", { class: "notice ok" },
      h("p", {}, h("strong", {}, `Key “${k.name}” created.`), " Copy it now: it will not be shown again."),
      h("p", { class: "secret-row" }, code, " ", copyButton(() => k.key))));
    await load();
  }), created, list);
  async function load() {
    const r = await api("GET", "/v1/account/keys");
    list.replaceChildren(table(["Name", "Key", "Tier", "Created", "Last used", ""], r.keys.map((k) => [
      k.name, h("code", {}, k.prefix + "…"), k.tier, fmtDate(k.createdAt), k.lastUsedDay || "never",
      k.revokedAt ? h("span", { class: "muted" }, "revoked " + fmtDate(k.revokedAt))
        : h("button", { type: "button", class: "danger small", onclick: async () => {
          if (!(await confirmDialog(`Revoke the key “${k.name}”? Programs using it stop working at once.`, "Revoke"))) return;
          try { await api("DELETE", "/v1/account/keys/" + k.id); toast("Key revoked"); } catch (e) { toast(e.message, "bad"); }
          await load();
        } }, "Revoke"),
    ]), "You have no API keys yet."));
  }
  await load();
}, { ...AUTH, title: "API keys" });

const CATEGORIES = ["brute_force", "port_scan", "ddos", "web_exploit", "sql_injection", "phishing", "spam", "bad_bot", "exploited_host", "malware", "dns_abuse", "open_proxy", "iot_targeted", "spoofing", "fraud", "other"];
const PROTOCOLS = ["", "ssh", "http", "ftp", "smtp", "mysql", "postgresql", "mongodb", "redis", "docker", "telnet", "elasticsearch", "mssql", "imap", "smb", "rtsp", "sip"];

async function keySelect() {
  const r = await api("GET", "/v1/account/keys");
  const live = r.keys.filter((k) => !k.revokedAt);
  if (!live.length) return null;
  return field("Count it against key", "keyId", { tag: "select", options: live.slice().reverse().map((k) => [k.id, `${k.name} (${k.prefix}…)`]) });
}

route("/report", async (page) => {
  page.append(h("h1", {}, "Report an IP"));
  const sel = await keySelect();
  if (!sel) { needKey(page); return; }
  const form = h("form", { class: "stack narrow", id: "report-form" },
    sel,
    field("IP address", "ip", { required: true }),
    field("Category", "category", { tag: "select", options: CATEGORIES.map((c) => [c, c.replace(/_/g, " ")]) }),
    field("Protocol (optional)", "protocol", { tag: "select", options: PROTOCOLS.map((p) => [p, p || "—"]) }),
    field("Comment (optional, no personal data please)", "comment", { tag: "textarea", rows: 3, maxlength: 1000 }),
    h("button", { type: "submit" }, "Send report"));
  const result = h("div", { "aria-live": "polite" });
  page.append(h("section", { class: "card" }, h("h2", {}, "One address"), onSubmit(form, async (v) => {
    const body = { ip: v.ip, category: v.category, protocol: v.protocol || null, comment: v.comment || null };
    const r = await api("POST", "/v1/ui/report?keyId=" + encodeURIComponent(v.keyId), body);
    result.replaceChildren(h("p", { class: "notice ok" }, r.counted ? `Report about ${v.ip} recorded.` : `Report about ${v.ip} received; a report from you about it in the last 15 minutes already counted.`));
    form.elements.ip.value = "";
  }, (v) => (looksLikeIp(v.ip) ? null : { ip: "enter an IPv4 or IPv6 address" }), { report: "ip" }), result));

  const csvSel = await keySelect();
  const file = h("input", { type: "file", name: "file", accept: ".csv,text/csv", required: true, id: "csv-file" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const out = h("div", { "aria-live": "polite", id: "csv-result" });
  const csvForm = h("form", { class: "stack narrow" }, csvSel,
    h("div", { class: "field", "data-field": "file" }, h("label", { for: "csv-file" }, "CSV file (IP,Category[,Protocol[,Comment]], up to 10,000 rows, 2 MB)"), file, h("p", { class: "field-error" })),
    h("button", { type: "submit", id: "csv-upload" }, "Upload"), progress);
  onSubmit(csvForm, (v) => new Promise((resolve, reject) => {
    const f = file.files[0];
    if (!f) { reject(new ApiError(400, { error: "choose a CSV file", field: "file" })); return; }
    if (f.size > 2 * 1024 * 1024) { reject(new ApiError(413, { error: "the file is larger than 2 MB", field: "file" })); return; }
    const fd = new FormData();
    fd.append("file", f, f.name);
    // XMLHttpRequest, because fetch cannot report upload progress.
    const x = new XMLHttpRequest();
    x.open("POST", "/v1/ui/bulk-report?keyId=" + encodeURIComponent(v.keyId));
    x.setRequestHeader("X-CSRF-Token", cookie("csrf_token") || "");
    x.setRequestHeader("Accept", "application/json");
    progress.hidden = false;
    progress.value = 0;
    x.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100); };
    x.onerror = () => { progress.hidden = true; reject(new Error("upload failed: network error")); };
    x.onload = () => {
      progress.value = 100;
      let r = null;
      try { r = JSON.parse(x.responseText); } catch { r = { error: x.responseText.slice(0, 200) }; }
      if (x.status === 401) { navigate("/login?next=/report", true); reject(new ApiError(401, r)); return; }
      if (x.status < 200 || x.status >= 300) { reject(new ApiError(x.status, { ...r, field: r && r.field === "body" ? "file" : r && r.field })); return; }
      const errors = r.errors || [];
      out.replaceChildren(h("p", { class: "notice " + (errors.length ? "" : "ok") }, `${r.total} rows: ${r.accepted ?? r.total - r.rejected} accepted, ${r.rejected} rejected.`),
        table(["Row", "IP", "Problem"], errors.map((e) => [String(e.row), e.ip || "", e.error]), "Every row was accepted."));
      resolve();
    };
    x.send(fd);
  }));
  page.append(h("section", { class: "card" }, h("h2", {}, "Upload a CSV"), csvForm, out));
}, { ...AUTH, title: "Report" });

const KINDS = { ip: ["IP address", "ip"], range: ["IP range (CIDR)", "cidr"], username: ["Username", "username"], email: ["E-mail address", "email"] };

route("/alerts", async (page) => {
  page.append(h("h1", {}, "My alerts"),
    h("p", {}, "Be told by e-mail or a signed webhook when new evidence matches an address, a range, a username or an e-mail address."));
  const sel = await keySelect();
  if (!sel) { needKey(page); return; }
  const kindSel = field("Watch", "kind", { tag: "select", options: Object.entries(KINDS).map(([k, [t]]) => [k, t]) });
  const form = h("form", { class: "stack narrow" }, kindSel,
    field("Value to watch", "value", { required: true, placeholder: "203.0.113.7" }),
    field("Label (optional)", "label", { maxlength: 100 }),
    field("Notify e-mail", "notifyEmail", { type: "email", value: state.me.email }),
    field("Webhook URL (optional, https)", "webhookUrl", { type: "url", placeholder: "https://example.org/hook" }),
    h("button", { type: "submit" }, "Create alert"));
  const secret = h("div", { "aria-live": "polite" });
  const lists = h("div");
  const deliveries = h("div");
  page.append(h("section", { class: "card" }, h("h2", {}, "New alert"), onSubmit(form, async (v) => {
    const [, valueField] = KINDS[v.kind];
    const body = { [valueField]: v.value, label: v.label || null, notifyEmail: v.notifyEmail || null, webhookUrl: v.webhookUrl || null };
    const a = await api("POST", `/v1/ui/${v.kind}-alerts`, body);
    toast("Alert created");
    form.elements.value.value = "";
    secret.replaceChildren(a.webhookSecret ? h("div", { class: "notice ok" }, h("p", {}, "Webhook signing secret (shown once): ", h("code", { class: "secret" }, a.webhookSecret), " ", copyButton(() => a.webhookSecret))) : "");
    await load();
  }, (v) => (!v.notifyEmail && !v.webhookUrl ? { notifyEmail: "give an e-mail address, a webhook URL or both" } : null),
  { ip: "value", cidr: "value", username: "value", email: "value" }), secret),
  h("section", { class: "card" }, h("h2", {}, "Watching"), lists),
  h("section", { class: "card" }, h("h2", {}, "Delivery log"), deliveries));
  async function load() {
    const parts = [];
    for (const [kind, [title, vf]] of Object.entries(KINDS)) {
      const r = await api("GET", `/v1/ui/${kind}-alerts`);
      for (const a of r.alerts) {
        parts.push([title, h("code", {}, a[vf]), a.label || "", [a.notifyEmail, a.webhookUrl].filter(Boolean).join(", "), String(a.totalAlerts), fmtDate(a.lastAlertedAt),
          h("button", { type: "button", class: "danger small", onclick: async () => {
            if (!(await confirmDialog(`Delete the alert on ${a[vf]}?`, "Delete"))) return;
            try { await api("DELETE", `/v1/ui/${kind}-alerts/${a.id}`); toast("Alert deleted"); } catch (e) { toast(e.message, "bad"); }
            await load();
          } }, "Delete")]);
      }
    }
    lists.replaceChildren(table(["Kind", "Value", "Label", "Notify", "Sent", "Last", ""], parts, "No alerts yet."));
    const d = await api("GET", "/v1/ui/alerts/deliveries");
    deliveries.replaceChildren(table(["Created", "Channel", "Target", "Status", "Attempts", "Last error"],
      d.deliveries.map((x) => [fmtDate(x.createdAt), x.channel, x.target, x.status, String(x.attempts), x.lastError || ""]), "Nothing delivered yet."));
  }
  await load();
}, { ...AUTH, title: "Alerts" });

route("/sessions", async (page) => {
  page.append(h("h1", {}, "Sessions"));
  const list = h("div");
  page.append(list, h("p", {}, h("button", { type: "button", class: "danger", onclick: async () => {
    if (!(await confirmDialog("Sign out on every device, this one included?", "Sign out everywhere"))) return;
    await api("POST", "/v1/account/sessions/revoke-all", {});
    state.me = null;
    toast("Signed out everywhere");
    navigate("/login");
  } }, "Sign out everywhere")));
  async function load() {
    const r = await api("GET", "/v1/account/sessions");
    list.replaceChildren(table(["Started", "Last used", "Expires", "Device", "Address", ""], r.sessions.map((s) => [
      fmtDate(s.createdAt), fmtDate(s.lastUsedAt), fmtDate(s.expiresAt), s.userAgent || "unknown", s.ip || "",
      s.current ? h("strong", {}, "this session") : h("button", { type: "button", class: "secondary small", onclick: async () => {
        await api("DELETE", "/v1/account/sessions/" + s.id); toast("Session ended"); await load();
      } }, "Sign out")])));
  }
  await load();
}, { ...AUTH, title: "Sessions" });

// ---------- privacy centre ----------

route("/privacy-centre", async (page) => {
  page.append(h("h1", {}, "My data"), h("p", {}, "Your rights under the GDPR, in one place. Every request is logged with its date so the 30-day deadline is kept."));
  let p = null;
  let available = true;
  try { p = await api("GET", "/v1/account/privacy"); } catch (e) { if (missing(e)) available = false; else throw e; }

  // Download
  const exp = h("section", { class: "card" }, h("h2", {}, "Download my data"), h("p", {}, "A machine-readable JSON file with everything held about your account."));
  const expBtn = h("button", { type: "button", id: "export-btn" }, "Download my data");
  const expOut = h("div", { "aria-live": "polite" });
  expBtn.addEventListener("click", async () => {
    try {
      const data = await api("GET", "/v1/account/privacy/export");
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `sikker-${state.me.username}.json`, id: "export-link" }, "Save the file");
      expOut.replaceChildren(h("p", { class: "notice ok" }, "Your export is ready: ", a));
      a.click();
    } catch (e) {
      expOut.replaceChildren(missing(e) ? unavailable("Data export") : h("p", { class: "form-error" }, e.message));
    }
  });
  exp.append(expBtn, expOut);
  page.append(exp);

  // Rectify
  const me = state.me;
  const rect = h("form", { class: "stack narrow" },
    field("E-mail", "email", { type: "email", value: me.email, required: true }),
    field("First name", "firstName", { value: me.firstName || "", required: true }),
    field("Last name", "lastName", { value: me.lastName || "", required: true }),
    field("Country", "country", { value: me.country || "", maxlength: 2, required: true }),
    field("Company", "company", { value: me.company || "" }),
    field("VAT ID", "vatId", { value: me.vatId || "" }),
    h("button", { type: "submit" }, "Save changes"));
  page.append(h("section", { class: "card" }, h("h2", {}, "Correct my details"), onSubmit(rect, async (v) => {
    const r = await api("PATCH", "/v1/account", v);
    state.me = r.account;
    toast(r.account.email !== me.email || !r.account.emailVerified ? "Saved; confirm the new address with the link we sent" : "Saved");
  }, null, { first_name: "firstName", last_name: "lastName", vat_id: "vatId" })));

  // Password change
  const pw = h("form", { class: "stack narrow" },
    field("Current password", "current_password", { type: "password", required: true, autocomplete: "current-password" }),
    field("New password", "new_password", { type: "password", required: true, minlength: 12, autocomplete: "new-password" }),
    h("button", { type: "submit" }, "Change password"));
  page.append(h("section", { class: "card" }, h("h2", {}, "Password"), onSubmit(pw, async (v) => {
    await api("POST", "/v1/account/password", v);
    pw.reset();
    toast("Password changed; your other sessions were signed out");
  }, null, { password: "new_password", currentPassword: "current_password", newPassword: "new_password" })));

  if (!available) {
    page.append(h("section", { class: "card" }, h("h2", {}, "Restrict, object, consent, erase"), unavailable("The privacy centre's requests")));
    return;
  }
  const toggle = (title, text, key, since, path, on, off) => {
    const btn = h("button", { type: "button", class: "secondary", id: `${key}-btn` }, p[key] ? off : on);
    const status = h("strong", { id: `${key}-state` }, p[key] ? "On" : "Off");
    const when = h("span", { class: "muted" }, p[since] ? ` since ${fmtDate(p[since])}` : "");
    btn.addEventListener("click", async () => {
      try {
        p = await api("POST", path, { on: !p[key] });
        btn.textContent = p[key] ? off : on;
        status.textContent = p[key] ? "On" : "Off";
        when.textContent = p[since] ? ` since ${fmtDate(p[since])}` : "";
        drawRequests();
        toast("Saved; request logged");
      } catch (e) { toast(e.message, "bad"); }
    });
    return h("section", { class: "card" }, h("h2", {}, title), h("p", {}, text), h("p", {}, "Now: ", status, when, " ", btn));
  };
  page.append(
    toggle("Restrict processing", "Freeze your account: your data is kept, but your API keys are refused until you lift the restriction. You can still sign in, download and erase.", "restricted", "restricted_since", "/v1/account/privacy/restriction", "Restrict", "Lift restriction"),
    toggle("Object to audience measurement", "Your page views are not counted while you are signed in. Anonymous visitors object by sending Global Privacy Control or Do Not Track.", "objected_to_audience_measurement", "objected_since", "/v1/account/privacy/objection", "Object", "Withdraw objection"));

  // Consent is per browser: the cookie holds it, the server logs each decision.
  const granted = () => cookie("ska_analytics_consent") === "granted";
  const cState = h("strong", { id: "consent-state" }, granted() ? "granted" : "not granted");
  const cWhen = h("span", { class: "muted" });
  const cBtn = h("button", { type: "button", class: "secondary", id: "consent-btn" }, granted() ? "Withdraw consent" : "Grant consent");
  cBtn.addEventListener("click", async () => {
    const grant = !granted();
    try {
      const r = await recordConsent(grant);
      cState.textContent = grant ? "granted" : "not granted";
      cWhen.textContent = r && r.recorded ? ` (recorded ${fmtDate(r.recorded)})` : "";
      cBtn.textContent = grant ? "Withdraw consent" : "Grant consent";
      toast("Consent recorded");
    } catch (e) { toast(e.message, "bad"); }
  });
  page.append(h("section", { class: "card" }, h("h2", {}, "Consent"),
    h("p", {}, "First-party analytics in this browser: ", cState, cWhen, " ", cBtn),
    h("p", { class: "muted small" }, "Withdrawing is as easy as granting; every decision is logged with its time.")));

  const reqs = h("div", { id: "privacy-requests" });
  const drawRequests = () => reqs.replaceChildren(table(["Request", "Via", "Received", "Due", "Answered"], (p.requests || []).map((r) => [
    r.kind.replace(/_/g, " "), r.via, fmtDate(r.received), fmtDate(dueDate(r.received)), r.answered ? fmtDate(r.answered) : "open"]), "No requests yet."));
  drawRequests();
  const file = h("form", { class: "row-form", id: "request-form" },
    field("Ask an admin for", "kind", { tag: "select", options: REQUEST_KINDS }),
    h("button", { type: "submit", class: "secondary" }, "File request"));
  page.append(h("section", { class: "card" }, h("h2", {}, "My requests"), reqs, onSubmit(file, async (v) => {
    const r = await api("POST", "/v1/account/privacy/requests", { kind: v.kind });
    toast(`Request filed; answered by ${fmtDate(r.request.deadline)} at the latest`);
    p = await api("GET", "/v1/account/privacy");
    drawRequests();
  })));

  const erase = h("form", { class: "stack narrow" },
    field("Your password, to confirm", "password", { type: "password", required: true, autocomplete: "current-password" }),
    field("I understand that my account and API keys are deleted", "confirm", { type: "checkbox" }),
    h("button", { type: "submit", class: "danger" }, "Erase my account"));
  page.append(h("section", { class: "card danger-zone" }, h("h2", {}, "Erase my account"),
    h("p", {}, "Authentication data is deleted at once; account data is kept only for the period in the privacy policy; your reports stay, anonymised."),
    onSubmit(erase, async (v) => {
      if (!(await confirmDialog("Erase your account now? This cannot be undone.", "Erase"))) return;
      const r = await api("POST", "/v1/account/privacy/erase", { password: v.password });
      state.me = null;
      if (r && r.purge_on) toast(`Your account was erased; the rest is purged on ${fmtDate(r.purge_on)}`);
      toast("Your account was erased");
      navigate("/");
    }, (v) => (v.confirm ? null : { confirm: "tick the box to confirm" }))));
}, { ...AUTH, title: "My data" });

const REQUEST_KINDS = [["rectification", "rectification of data I cannot change here"], ["access", "a copy of my data prepared by an admin"], ["erasure", "erasure by an admin"], ["objection", "an objection to other processing"]];

/** The 30-day answer deadline of a request received at `received`. */
function dueDate(received) {
  const t = new Date(received).getTime();
  return Number.isNaN(t) ? null : new Date(t + 30 * 86400000).toISOString();
}

export function setConsentCookie(granted) {
  document.cookie = `ska_analytics_consent=${granted ? "granted" : "denied"}; Max-Age=${60 * 60 * 24 * 365}; Path=/; Secure; SameSite=Lax`;
}

/** Logs the decision on the server (which also sets the cookie) and keeps the cookie in step. */
export async function recordConsent(granted) {
  setConsentCookie(granted);
  return api("POST", "/v1/privacy/consent", { decision: granted ? "granted" : "denied" }, { quiet: true });
}

export { loadMe };
