// Admin pages: users, sensors, whitelist, correction queue, retention,
// GDPR request deadlines, audience measurement and system health.

import { h, api, route, onSubmit, field, state, toast, fmtDate, fmtBytes, missing, unavailable, copyButton, table, confirmDialog } from "./core.js";
import { bars, columns } from "./charts.js";

const ADMIN = { admin: true };

const SECTIONS = [
  ["/admin/users", "Users"], ["/admin/sensors", "Sensors"], ["/admin/whitelist", "Whitelist"],
  ["/admin/corrections", "Correction queue"], ["/admin/retention", "Retention"], ["/admin/gdpr", "GDPR requests"],
  ["/admin/audience", "Audience"], ["/admin/health", "System health"],
];

function subnav() {
  return h("nav", { class: "subnav", "aria-label": "Admin" }, SECTIONS.map(([href, t]) => h("a", { href, "aria-current": location.pathname === href ? "page" : null }, t)));
}

/** Loads an endpoint the privacy work provides; 404 shows a clear notice. */
async function optional(page, what, path) {
  try { return await api("GET", path); } catch (e) {
    if (missing(e)) { page.append(unavailable(what)); return null; }
    throw e;
  }
}

route("/admin", (page) => {
  page.append(h("h1", {}, "Admin"), subnav(), h("ul", { class: "cards" }, SECTIONS.map(([href, t]) => h("li", { class: "card" }, h("a", { href }, t)))));
}, { ...ADMIN, title: "Admin" });

route("/admin/users", async (page) => {
  page.append(h("h1", {}, "Users"), subnav());
  const search = h("input", { type: "search", id: "user-search", placeholder: "Search by name, e-mail or id", "aria-label": "Search users" });
  const list = h("div");
  const invite = h("button", { type: "button", class: "secondary" }, "Create an invitation");
  const inviteOut = h("div", { "aria-live": "polite" });
  invite.addEventListener("click", async () => {
    const r = await api("POST", "/v1/admin/invites", { valid_days: 7 });
    inviteOut.replaceChildren(h("p", { class: "notice ok" }, "Invitation code (7 days): ", h("code", {}, r.invite), " ", copyButton(() => r.invite)));
  });
  page.append(h("div", { class: "row" }, search, invite), inviteOut, list);
  let users = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = users.filter((u) => !q || [u.username, u.email, String(u.id), u.firstName, u.lastName].join(" ").toLowerCase().includes(q));
    list.replaceChildren(table(["Id", "User", "E-mail", "Tier", "Role", "Status", ""], shown.map((u) => {
      const tier = h("input", { value: u.tier, size: 8, "aria-label": `Tier of ${u.username}` });
      const role = h("select", { "aria-label": `Role of ${u.username}` }, ["user", "admin"].map((r) => h("option", { value: r, selected: u.role === r }, r)));
      const save = h("button", { type: "button", class: "small" }, "Save");
      save.addEventListener("click", async () => {
        try { await api("PATCH", "/v1/admin/users/" + u.id, { tier: tier.value.trim(), role: role.value }); toast("Saved"); await load(); } catch (e) { toast(e.message, "bad"); }
      });
      const dis = h("button", { type: "button", class: u.disabled ? "secondary small" : "danger small" }, u.disabled ? "Enable" : "Disable");
      dis.addEventListener("click", async () => {
        if (!u.disabled && !(await confirmDialog(`Disable ${u.username}? Their sessions and keys stop working.`, "Disable"))) return;
        try { await api("PATCH", "/v1/admin/users/" + u.id, { disabled: !u.disabled }); toast("Saved"); await load(); } catch (e) { toast(e.message, "bad"); }
      });
      return [String(u.id), u.username, u.email + (u.emailVerified ? "" : " (unverified)"), tier, role, u.disabled ? "disabled" : "active", h("span", { class: "row" }, save, dis)];
    }), "No users match."));
  };
  search.addEventListener("input", draw);
  async function load() { users = (await api("GET", "/v1/admin/users")).users; draw(); }
  await load();
}, { ...ADMIN, title: "Users" });

route("/admin/sensors", async (page) => {
  page.append(h("h1", {}, "Sensors"), subnav());
  const out = h("div", { "aria-live": "polite" });
  const list = h("div");
  const form = h("form", { class: "row-form" }, field("Name of the new sensor", "name", { required: true, maxlength: 64 }), h("button", { type: "submit" }, "Create sensor"));
  page.append(onSubmit(form, async (v) => {
    const s = await api("POST", "/v1/admin/sensors", v);
    form.reset();
    out.replaceChildren(h("div", { class: "notice ok" }, h("p", {}, `Sensor “${s.name}” created. Its token is shown once:`), h("p", { class: "secret-row" }, h("code", { class: "secret" }, s.token), " ", copyButton(() => s.token))));
    await load();
  }), out, list);
  async function load() {
    const r = await api("GET", "/v1/admin/sensors");
    list.replaceChildren(table(["Id", "Name", "Created", "Last event", "Events", "Avg events/min", ""], r.sensors.map((s) => [
      s.id, s.name, fmtDate(s.createdAt), fmtDate(s.lastEventAt), String(s.events), String(s.eventsPerMinute),
      s.revokedAt ? "revoked" : h("button", { type: "button", class: "danger small", onclick: async () => {
        if (!(await confirmDialog(`Revoke sensor “${s.name}”?`, "Revoke"))) return;
        await api("DELETE", "/v1/admin/sensors/" + s.id); toast("Sensor revoked"); await load();
      } }, "Revoke")]), "No sensors yet."));
  }
  await load();
}, { ...ADMIN, title: "Sensors" });

route("/admin/whitelist", async (page) => {
  page.append(h("h1", {}, "Whitelist"), subnav(), h("p", {}, "Whitelisted addresses and networks are never listed (crawlers, your own ranges)."));
  const list = h("div");
  const form = h("form", { class: "row-form" }, field("IP or CIDR", "net", { required: true, placeholder: "192.0.2.0/24" }), field("Reason", "reason", { required: true }), h("button", { type: "submit" }, "Add"));
  page.append(onSubmit(form, async (v) => { await api("POST", "/v1/admin/whitelist", v); form.reset(); toast("Added"); await load(); }), list);
  async function load() {
    const r = await api("GET", "/v1/admin/whitelist");
    list.replaceChildren(table(["Network", "Reason", "Added", ""], r.whitelist.map((e) => [h("code", {}, e.net), e.reason, fmtDate(e.addedAt),
      h("button", { type: "button", class: "danger small", onclick: async () => {
        await api("DELETE", "/v1/admin/whitelist/" + encodeURIComponent(e.net)); toast("Removed"); await load();
      } }, "Remove")]), "The whitelist is empty."));
  }
  await load();
}, { ...ADMIN, title: "Whitelist" });

const REASON_TEXT = { false_positive: "false positive", ownership_change: "ownership change", dynamic_reassignment: "dynamic reassignment" };

function verificationText(v) {
  if (v === "from_ip") return "Verified: requested from the address itself.";
  if (v && v.admin) return `Decided by admin #${v.admin.admin}: ${v.admin.reason}`;
  return "";
}

route("/admin/corrections", async (page) => {
  page.append(h("h1", {}, "Correction queue"), subnav(),
    h("p", { class: "muted" }, "A granted correction hides the address from every public output; evidence keeps being aggregated, and new evidence is flagged here until the correction is revoked."));
  const filter = h("select", { "aria-label": "Show", id: "correction-filter" },
    [["pending", "Pending"], ["granted", "Granted"], ["denied", "Denied"], ["", "All"]].map(([v, t]) => h("option", { value: v }, t)));
  const list = h("div", { id: "corrections" });
  page.append(h("div", { class: "row" }, filter), list);
  filter.addEventListener("change", () => load());
  async function load() {
    const q = filter.value ? "?status=" + filter.value : "";
    const r = await optional(page, "The correction queue", "/v1/admin/corrections" + q);
    if (!r) { list.remove(); return; }
    const items = r.corrections || [];
    list.replaceChildren(...(items.length ? items.map((c) => {
      const reason = h("input", { type: "text", "aria-label": `Reason for the decision on ${c.ip}`, placeholder: "Reason (recorded, 1–500 characters)", maxlength: 500, class: "grow" });
      const decide = (decision, done) => async () => {
        if (!reason.value.trim()) { reason.setAttribute("aria-invalid", "true"); reason.focus(); toast("Give a reason", "bad"); return; }
        try {
          await api("POST", `/v1/admin/corrections/${c.id}/${decision}`, { reason: reason.value.trim() });
          toast(`Correction for ${c.ip} ${done}`);
          await load();
        } catch (e) { toast(e.message, "bad"); }
      };
      const actions = c.status === "pending"
        ? [h("button", { type: "button", class: "approve", onclick: decide("approve", "approved") }, "Approve"), h("button", { type: "button", class: "danger deny", onclick: decide("deny", "denied") }, "Deny")]
        : c.status === "granted" ? [h("button", { type: "button", class: "danger revoke", onclick: decide("revoke", "revoked") }, "Revoke")] : [];
      return h("div", { class: "card correction", "data-id": c.id, "data-status": c.status },
        h("p", {}, h("strong", {}, c.ip), " — ", h("span", { class: "status" }, c.status), " · requested ", fmtDate(c.requested_at), c.decided_at ? [" · decided ", fmtDate(c.decided_at)] : null),
        h("p", {}, REASON_TEXT[c.reason] || c.reason, c.details ? [": ", c.details] : null),
        c.verification ? h("p", { class: "muted" }, verificationText(c.verification)) : null,
        c.new_evidence ? h("p", { class: "notice" }, "New evidence since the decision (last ", fmtDate(c.last_evidence_at), "): review, and revoke if the listing is right.") : null,
        (c.history || []).length ? h("ul", { class: "muted" }, c.history.map((x) => h("li", {}, `${fmtDate(new Date(x.at_ms).toISOString())}: ${x.event}`))) : null,
        actions.length ? h("div", { class: "row" }, reason, ...actions) : null);
    }) : [h("p", { class: "muted" }, filter.value ? `No ${filter.value} corrections.` : "No correction requests.")]));
  }
  await load();
}, { ...ADMIN, title: "Corrections" });

route("/admin/retention", async (page) => {
  page.append(h("h1", {}, "Retention status"), subnav(),
    h("p", { class: "muted" }, "What each category holds now and when its oldest item is due; the hourly sweep (or ", h("code", {}, "sikker admin sweep"), ") deletes it at the first sweep after that."));
  const r = await optional(page, "Retention status", "/v1/admin/retention");
  if (!r) return;
  page.append(h("div", { id: "retention" }, table(["Data", "Promise", "Kept for", "Rule", "Items", "Oldest", "Next purge"], (r.categories || []).map((c) => [
    c.category.replace(/_/g, " "), c.promise, c.period_days == null ? "—" : `${c.period_days} days`, c.rule, String(c.items), fmtDate(c.oldest), fmtDate(c.next_purge)]), "No categories.")));
}, { ...ADMIN, title: "Retention" });

route("/admin/gdpr", async (page) => {
  page.append(h("h1", {}, "GDPR requests"), subnav(), h("p", { class: "muted" }, "Open requests, soonest deadline first. Each must be answered within 30 days."));
  const r = await optional(page, "GDPR request tracking", "/v1/admin/gdpr/requests");
  if (!r) return;
  page.append(h("div", { id: "gdpr" }, table(["Account", "Request", "Via", "Received", "Deadline", "Left"], (r.pending || []).map((q) => [
    String(q.account), q.kind.replace(/_/g, " "), q.via, fmtDate(q.received),
    h("span", { class: q.overdue ? "sev sev-high" : q.days_left < 7 ? "sev sev-medium" : "" }, fmtDate(q.deadline)),
    q.overdue ? h("strong", { class: "overdue" }, "overdue") : `${q.days_left} days`]), "No open requests.")));
}, { ...ADMIN, title: "GDPR requests" });

route("/admin/audience", async (page) => {
  page.append(h("h1", {}, "Audience"), subnav(), h("p", { class: "muted" }, "Cookie-less and anonymous: visitor ids are hashes under a salt redrawn every day, so weekly and monthly visitors are sums of daily uniques."));
  const r = await optional(page, "Audience measurement", "/v1/admin/audience");
  if (!r) return;
  const days = r.days || [];
  const pairs = (list) => (list || []).map((x) => ({ label: x.key || "(none)", value: x.views }));
  const stat = (k, v) => h("div", { class: "card stat", "data-stat": k }, h("span", {}, k), h("strong", {}, v));
  page.append(
    h("p", { class: "muted" }, `${r.from} to ${r.to}`),
    h("div", { class: "cards" }, stat("Visitors", String(r.visitors)), stat("Page views", String(r.page_views)), stat("Bounce rate", `${Math.round((r.bounce_rate || 0) * 100)}%`)),
    h("section", { class: "card" }, h("h2", {}, "Unique visitors per day"), columns(days.map((d) => ({ label: d.day, value: d.visitors })), { title: "Unique visitors per day" })),
    h("section", { class: "card" }, h("h2", {}, "Bounce rate per day"), columns(days.map((d) => ({ label: d.day, value: d.visitors ? Math.round((d.bounces / d.visitors) * 100) : 0 })), { title: "Bounce rate per day", unit: "%" })),
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Visitors per week"), columns((r.weeks || []).map((w) => ({ label: w.week_of, value: w.visitors })), { title: "Visitors per week (sum of daily uniques)" })),
      h("section", { class: "card" }, h("h2", {}, "Visitors per month"), columns((r.months || []).map((m) => ({ label: m.month, value: m.visitors })), { title: "Visitors per month (sum of daily uniques)" }))),
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Top pages"), bars(pairs(r.top_pages), { title: "Top pages" })),
      h("section", { class: "card" }, h("h2", {}, "Countries"), bars(pairs(r.countries), { title: "Countries" }))),
    h("section", { class: "card" }, h("h2", {}, "Referrers"), bars(pairs(r.referrers), { title: "Referrers" })));
}, { ...ADMIN, title: "Audience" });

route("/admin/health", async (page) => {
  page.append(h("h1", {}, "System health"), subnav());
  const r = await api("GET", "/v1/admin/health");
  const up = r.uptimeSeconds;
  const uptime = `${Math.floor(up / 86400)} d ${Math.floor((up % 86400) / 3600)} h ${Math.floor((up % 3600) / 60)} min`;
  page.append(h("div", { class: "cards" },
    [["Status", r.status], ["Indicators", String(r.indicators)], ["Memory (RSS)", fmtBytes(r.memoryRssBytes)], ["Database", fmtBytes(r.dbBytes)], ["Uptime", uptime], ["Version", r.version]]
      .map(([k, v]) => h("div", { class: "card stat", "data-stat": k }, h("span", {}, k), h("strong", {}, v)))),
  h("p", { class: "muted" }, "Running since ", fmtDate(r.startedAt), "."));
}, { ...ADMIN, title: "Health" });

export const admin = state;
