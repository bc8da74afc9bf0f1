// Public pages: start page with the IP search, the IP page, the privacy
// policy (from the live configuration), the correction request form and
// the account entry pages (sign-up, sign-in, reset, verification, setup).

import { h, api, route, navigate, onSubmit, field, state, loadMe, toast, fmtDate, missing, unavailable, hashToken, ApiError } from "./core.js";
import { gauge, bars, severityClass } from "./charts.js";

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
export const looksLikeIp = (v) => IPV4.test(v) || (v.includes(":") && /^[0-9a-fA-F:.]+$/.test(v));

function searchForm(value = "") {
  const form = h("form", { class: "search", role: "search" },
    field("IP address to look up", "ip", { value, placeholder: "203.0.113.7 or 2001:db8::1", autocomplete: "off", required: true, inputmode: "text", spellcheck: "false" }),
    h("button", { type: "submit" }, "Look up"));
  return onSubmit(form, (v) => navigate("/ip/" + encodeURIComponent(v.ip)),
    (v) => (looksLikeIp(v.ip) ? null : { ip: "enter an IPv4 or IPv6 address" }));
}

route("/", (page) => {
  page.append(
    h("section", { class: "hero" },
      h("h1", {}, "IP reputation you host yourself"),
      h("p", { class: "lead" }, "Look up what this server's sensors and reporters have seen from an address. Lookups on this site are free and are not stored."),
      searchForm()),
    h("section", { class: "cards" },
      h("div", { class: "card" }, h("h2", {}, "For your firewall"), h("p", {}, "Block lists, a SikkerAPI- and AbuseIPDB-compatible API and a TAXII 2.1 feed, with an API key.")),
      h("div", { class: "card" }, h("h2", {}, "Privacy first"), h("p", {}, "No third-party resources, no tracking cookies, retention periods you can read in the ", h("a", { href: "/privacy" }, "privacy policy"), ".")),
      h("div", { class: "card" }, h("h2", {}, "Listed by mistake?"), h("p", {}, h("a", { href: "/correction" }, "Request a listing correction"), "."))));
}, { title: "Lookup" });

const sevOrder = { very_high: 0, high: 1, medium: 2, low: 3, info: 4 };

route("/ip/:ip", async (page, { ip }) => {
  page.append(searchForm(ip));
  const out = h("div", { class: "ip-result", "aria-live": "polite" }, h("p", { class: "muted" }, "Looking up…"));
  page.append(out);
  let r;
  try {
    r = await api("GET", "/v1/ui/ip/" + encodeURIComponent(ip));
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 429 ? e.message : e.message;
    out.replaceChildren(h("p", { class: "form-error", role: "alert" }, `Cannot look up “${ip}”: ${msg}`));
    return;
  }
  const geo = r.geolocation || {};
  // A corrected listing answers exactly like an unlisted address (no flag that would publish it).
  const status = r.isWhitelisted
      ? h("p", { class: "badge ok" }, "Whitelisted: this address is never listed.")
      : r.found
        ? h("p", { class: "badge badge-" + severityClass(r.confidenceLevel) }, `Seen: confidence ${r.confidenceLevel}/100`)
        : h("p", { class: "badge not-listed" }, "Not listed: no recent evidence about this address.");
  const dl = (pairs) => h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  const place = [geo.city, geo.countryName].filter(Boolean).join(", ");
  out.replaceChildren(
    h("h1", { class: "ip-title" }, r.ip),
    status,
    h("div", { class: "grid2" },
      h("section", { class: "card center" }, gauge(r.confidenceLevel)),
      h("section", { class: "card" }, h("h2", {}, "Where and who"),
        dl([["Location", place || "unknown"], ["Country code", geo.countryCode], ["ASN", geo.asn ? "AS" + geo.asn : null], ["Network", geo.asnOrg], ["Tor exit", geo.isTor ? "yes" : null], ["Open proxy", geo.isProxy ? "yes" : null], ["First seen", r.found ? fmtDate(r.firstSeen) : "—"], ["Last seen", r.found ? fmtDate(r.lastSeen) : "—"], ["Reports", r.totalReports], ["Distinct reporters", r.distinctReporters], ["Sessions", r.totalSessions]]))),
  );
  if (r.found) {
    const behaviors = (r.behaviors || []).slice().sort((a, b) => (sevOrder[a.severity] ?? 9) - (sevOrder[b.severity] ?? 9));
    out.append(
      h("section", { class: "card" }, h("h2", {}, "Behaviors"),
        behaviors.length
          ? h("ul", { class: "behaviors" }, behaviors.map((b) => h("li", {}, h("span", { class: "sev sev-" + b.severity }, b.severity), " ", h("strong", {}, b.name), ` ×${b.count}`, h("br"), h("span", { class: "muted" }, b.description))))
          : h("p", { class: "muted" }, "No behaviors recorded.")),
      h("section", { class: "card" }, h("h2", {}, "Protocols"),
        bars((r.protocols || []).map((p) => ({ label: p.protocol, value: p.events + p.reports })), { title: "Events and reports per protocol" })),
      h("section", { class: "card" }, h("h2", {}, "Categories"),
        (r.categories || []).length
          ? h("ul", { class: "chips" }, r.categories.map((c) => h("li", { class: "chip" }, `${c.name} (${c.count})`)))
          : h("p", { class: "muted" }, "No categories.")));
  }
  out.append(h("p", {}, "Is this listing wrong? ", h("a", { href: "/correction?ip=" + encodeURIComponent(r.ip) }, "Request a correction"), "."));
}, { title: "IP lookup" });

const retentionLabels = {
  rawReportsDays: "Raw reports (each submitted report)",
  indicatorsDays: "IP indicators without new evidence",
  apiUsageDays: "API usage counters per key and day",
  networkDays: "Network data (the address you registered from; sessions end sooner, at most 30 days)",
  accountAfterDeletionDays: "What remains of an erased account",
  analyticsDays: "First-party analytics events (only with consent)",
  audienceDays: "Anonymous audience measurement (page views)",
  privacyLogDays: "Consent, request and notice logs",
};

route("/privacy", async (page) => {
  page.append(h("h1", {}, "Privacy policy"));
  let p;
  try {
    p = await api("GET", "/v1/ui/policy");
  } catch (e) {
    page.append(missing(e) ? unavailable("The live policy") : h("p", { class: "form-error" }, e.message));
    return;
  }
  const ret = p.retention || {};
  page.append(
    h("p", { class: "lead" }, "This page is generated from the server's live configuration: the periods below are the ones the server enforces right now."),
    h("h2", {}, "How long we keep things"),
    h("div", { class: "table-wrap" }, h("table", { class: "policy-retention" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Data"), h("th", { scope: "col" }, "Kept for"))),
      h("tbody", {}, Object.entries(ret).map(([k, v]) => h("tr", { "data-key": k }, h("td", {}, retentionLabels[k] || k), h("td", {}, `${v} days`)))))),
    h("h2", {}, "What a lookup leaves behind"),
    h("p", {}, "Looking up an IP address on this site is free and is not stored. API lookups leave only per-key daily counters for quotas."),
    h("h2", {}, "Cookies"),
    h("ul", {},
      h("li", {}, h("code", {}, "access_token"), ` — your sign-in, ${p.sessions ? p.sessions.accessTokenMinutes : 15} minutes, HttpOnly.`),
      h("li", {}, h("code", {}, "refresh_token"), " — keeps you signed in for 24 hours (30 days with “remember me”), HttpOnly, sent only to the session endpoints."),
      h("li", {}, h("code", {}, "csrf_token"), " — protects your forms against cross-site requests."),
      h("li", {}, h("code", {}, "ska_analytics_consent"), " — your answer to the analytics question; analytics stay off until you grant them.")),
    h("h2", {}, "Your rights"),
    h("p", {}, "Signed-in users can download, correct, restrict, object to and erase their data in ", h("a", { href: "/privacy-centre" }, "My data"), ". Anyone can ", h("a", { href: "/correction" }, "request a listing correction"), "."),
    p.policy ? h("div", { class: "policy-extra" }, p.policy.split("\n\n").map((para) => h("p", {}, para))) : null);
}, { title: "Privacy policy" });

const CORRECTION_REASONS = [["false_positive", "It was never malicious (false positive)"], ["ownership_change", "The address has a new owner"], ["dynamic_reassignment", "The address is dynamic and was reassigned"]];

route("/correction", (page, _p, q) => {
  page.append(h("h1", {}, "Request a listing correction"),
    h("p", {}, "If an address you control is listed by mistake, tell us. A correction is granted after verified control: the request comes from the address itself, or an admin decides with a recorded reason."));
  const form = h("form", { class: "stack", id: "correction-form" },
    field("IP address", "ip", { value: q.get("ip") || "", required: true }),
    field("Why is the listing wrong?", "reason", { tag: "select", options: CORRECTION_REASONS }),
    field("Details (optional, no personal data please)", "details", { tag: "textarea", rows: 4, maxlength: 1000 }),
    h("button", { type: "submit" }, "Send request"));
  page.append(onSubmit(form, async (v) => {
    let r;
    try {
      r = await api("POST", "/v1/corrections", { ip: v.ip, reason: v.reason, details: v.details || null });
    } catch (e) {
      if (missing(e)) { form.replaceWith(unavailable("Listing corrections")); return; }
      if (e instanceof ApiError && e.status === 404) throw new ApiError(404, { error: `${v.ip} is not listed: there is nothing to correct`, field: "ip" });
      throw e;
    }
    const c = r.correction;
    form.replaceWith(h("p", { class: "notice ok", role: "status", id: "correction-result", "data-status": c.status },
      c.status === "granted"
        ? `Corrected: your request came from ${c.ip} itself, so ${c.ip} is no longer listed publicly.`
        : `Thank you: your request about ${c.ip} (number ${c.id}) was received; an admin will decide and record a reason.`));
  }, (v) => (looksLikeIp(v.ip) ? null : { ip: "enter an IPv4 or IPv6 address" })));
}, { title: "Listing correction" });

function safeNext(q) {
  const n = q.get("next");
  return n && n.startsWith("/") && !n.startsWith("//") ? n : "/dashboard";
}

route("/login", (page, _p, q) => {
  if (state.me) { navigate(safeNext(q), true); return; }
  page.append(h("h1", {}, "Sign in"));
  if (q.get("next")) page.append(h("p", { class: "notice" }, "Please sign in to continue."));
  const form = h("form", { class: "stack narrow" },
    field("Username or e-mail", "login", { required: true, autocomplete: "username" }),
    field("Password", "password", { type: "password", required: true, autocomplete: "current-password" }),
    field("Remember me for 30 days", "remember", { type: "checkbox" }),
    h("button", { type: "submit" }, "Sign in"),
    h("p", {}, h("a", { href: "/reset-password" }, "Forgot your password?"), " · ", h("a", { href: "/signup" }, "Create an account")));
  page.append(onSubmit(form, async (v) => {
    const r = await api("POST", "/v1/session/login", v);
    state.me = r.account;
    toast("Signed in");
    navigate(safeNext(q), true);
  }, null, { login: "login", username: "login", email: "login" }));
}, { title: "Sign in" });

function profileFields() {
  return [
    field("First name", "first_name", { required: true, autocomplete: "given-name" }),
    field("Last name", "last_name", { required: true, autocomplete: "family-name" }),
    field("Country (two letters)", "country", { required: true, maxlength: 2, autocomplete: "country", placeholder: "NO" }),
    field("Account type", "account_type", { tag: "select", options: [["individual", "Individual"], ["company", "Company"]] }),
    field("Company (companies only)", "company", { autocomplete: "organization" }),
    field("VAT ID (companies only)", "vat_id"),
  ];
}

function signupChecks(v) {
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(v.username)) return { username: "3–32 letters, digits, dots, dashes or underscores" };
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v.email)) return { email: "enter a valid e-mail address" };
  if (v.password.length < 12) return { password: "use at least 12 characters" };
  if (!/^[A-Za-z]{2}$/.test(v.country)) return { country: "two-letter country code, e.g. NO" };
  if (v.account_type === "company" && !v.company) return { company: "required for a company account" };
  if (!v.age_confirmed) return { age_confirmed: "you must be at least 16 to create an account" };
  return null;
}

const signupAliases = { firstName: "first_name", lastName: "last_name", accountType: "account_type", vatId: "vat_id", ageConfirmed: "age_confirmed" };

function accountForm(button, extra = []) {
  return h("form", { class: "stack narrow" },
    extra,
    field("Username", "username", { required: true, autocomplete: "username" }),
    field("E-mail", "email", { type: "email", required: true, autocomplete: "email" }),
    field("Password", "password", { type: "password", required: true, autocomplete: "new-password", minlength: 12 }, "At least 12 characters."),
    profileFields(),
    field("I confirm I am at least 16 years old", "age_confirmed", { type: "checkbox" }),
    h("button", { type: "submit" }, button));
}

route("/signup", (page, _p, q) => {
  page.append(h("h1", {}, "Create an account"));
  const invite = q.get("invite");
  const form = accountForm("Sign up", invite ? [] : [field("Invitation code (if registration is by invitation)", "invite")]);
  page.append(onSubmit(form, async (v) => {
    const body = { ...v, invite: invite || v.invite || null };
    await api("POST", "/v1/account/register", body);
    form.replaceWith(h("div", { class: "notice ok", role: "status" },
      h("p", {}, "Almost done: we sent a confirmation link to ", h("strong", {}, v.email), "."),
      h("p", {}, "Open it within 24 hours, then ", h("a", { href: "/login" }, "sign in"), ".")));
  }, signupChecks, signupAliases));
}, { title: "Sign up" });

route("/setup", (page) => {
  const token = hashToken();
  page.append(h("h1", {}, "Create the first admin account"));
  if (!token) { page.append(h("p", { class: "form-error" }, "Open the one-time link the server printed at its first start (it ends in #token=…).")); return; }
  const form = accountForm("Create admin account");
  page.append(onSubmit(form, async (v) => {
    await api("POST", "/v1/account/bootstrap", { ...v, token });
    form.replaceWith(h("p", { class: "notice ok", role: "status" }, "The admin account exists. ", h("a", { href: "/login" }, "Sign in"), "."));
  }, signupChecks, { ...signupAliases, token: "username" }));
}, { title: "Setup" });

route("/verify-email", async (page) => {
  page.append(h("h1", {}, "Confirm your e-mail address"));
  const token = hashToken();
  const msg = h("p", { role: "status" }, "Confirming…");
  page.append(msg);
  if (!token) { msg.textContent = "This link is incomplete: open the whole link from the e-mail."; msg.className = "form-error"; return; }
  try {
    await api("POST", "/v1/account/verify-email", { token }, { quiet: true });
    msg.className = "notice ok";
    msg.replaceChildren("Your e-mail address is confirmed. ", state.me ? h("a", { href: "/keys" }, "Create an API key") : h("a", { href: "/login" }, "Sign in"), ".");
    if (state.me) await loadMe();
  } catch (e) {
    msg.className = "form-error";
    msg.textContent = `This link does not work: ${e.message}`;
  }
}, { title: "Confirm e-mail" });

route("/reset-password", (page) => {
  const token = hashToken();
  page.append(h("h1", {}, "Reset your password"));
  if (!token) {
    const form = h("form", { class: "stack narrow" },
      field("E-mail address of your account", "email", { type: "email", required: true, autocomplete: "email" }),
      h("button", { type: "submit" }, "Send reset link"));
    page.append(onSubmit(form, async (v) => {
      const r = await api("POST", "/v1/account/password-reset", v, { quiet: true });
      form.replaceWith(h("p", { class: "notice ok", role: "status" }, r.message || "Check your e-mail."));
    }));
    return;
  }
  const form = h("form", { class: "stack narrow" },
    field("New password", "password", { type: "password", required: true, minlength: 12, autocomplete: "new-password" }, "At least 12 characters."),
    field("New password again", "password2", { type: "password", required: true, autocomplete: "new-password" }),
    h("button", { type: "submit" }, "Set new password"));
  page.append(onSubmit(form, async (v) => {
    await api("POST", "/v1/account/password-reset/confirm", { token, password: v.password }, { quiet: true });
    form.replaceWith(h("p", { class: "notice ok", role: "status" }, "Your password was changed and your other sessions were signed out. ", h("a", { href: "/login" }, "Sign in"), "."));
  }, (v) => (v.password !== v.password2 ? { password2: "the two passwords differ" } : null), { token: "password" }));
}, { title: "Reset password" });
