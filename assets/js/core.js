// Core of the web UI: element builder, same-origin API client (CSRF,
// one refresh on 401, then back to login), router, forms and theme.
// Nothing here loads anything from another origin.

export const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element. Attributes never include inline styles (CSP). */
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (!svg && k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

/** An API answer that was not 2xx. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `request failed (${status})`);
    this.status = status;
    this.field = body && body.field;
    this.body = body;
  }
}

let refreshing = null;

async function refreshOnce() {
  if (!refreshing) {
    refreshing = fetch("/v1/session/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": cookie("csrf_token") || "" },
    }).then((r) => r.ok).catch(() => false).finally(() => {
      setTimeout(() => { refreshing = null; }, 0);
    });
  }
  return refreshing;
}

/**
 * Calls the server's JSON API. `opts.form` sends FormData; `opts.quiet`
 * leaves a failed session alone instead of sending the person to login.
 */
export async function api(method, path, body, opts = {}) {
  const send = () => {
    const headers = { Accept: "application/json" };
    let payload;
    if (opts.form) payload = opts.form;
    else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = cookie("csrf_token") || "";
    return fetch(path, { method, headers, body: payload, credentials: "same-origin", cache: "no-store" });
  };
  let r = await send();
  const sessionPath = !path.startsWith("/v1/session/") && !path.startsWith("/v1/ui/ip/");
  if (r.status === 401 && sessionPath && cookie("csrf_token")) {
    if (await refreshOnce()) r = await send();
  }
  if (r.status === 401 && sessionPath && !opts.quiet) {
    state.me = null;
    renderNav();
    const back = location.pathname + location.search;
    navigate("/login?next=" + encodeURIComponent(back), true);
    throw new ApiError(401, { error: "your session has ended; please sign in again" });
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.slice(0, 200) }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** True when the endpoint does not exist on this server (404 on a route). */
export const missing = (e) => e instanceof ApiError && e.status === 404 && /no such endpoint/i.test(e.message);

export function unavailable(what) {
  return h("div", { class: "notice" }, `${what} is not available on this server.`);
}

export const state = { me: null, loaded: false };

export async function loadMe() {
  if (!cookie("csrf_token")) { state.me = null; state.loaded = true; return null; }
  try {
    const v = await api("GET", "/v1/account", undefined, { quiet: true });
    state.me = v.account;
  } catch { state.me = null; }
  state.loaded = true;
  return state.me;
}

// ---------- toasts and formatting ----------

export function toast(msg, kind = "ok") {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast show " + kind;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast"; }, 4000);
}

export function fmtDate(s) {
  if (!s) return "—";
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function copyButton(getText, label = "Copy") {
  const b = h("button", { type: "button", class: "secondary" }, label);
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      b.textContent = "Copied";
    } catch {
      b.textContent = "Select and copy manually";
    }
    setTimeout(() => { b.textContent = label; }, 2000);
  });
  return b;
}

// ---------- forms ----------

/** A labelled input; `name` is also the API field its errors come back on. */
export function field(label, name, attrs = {}, hint) {
  const id = "f-" + name + "-" + Math.random().toString(36).slice(2, 7);
  const { tag, options, ...rest } = attrs;
  const input = tag === "select"
    ? h("select", { id, name, ...rest }, (options || []).map(([v, t]) => h("option", { value: v }, t)))
    : tag === "textarea"
      ? h("textarea", { id, name, ...rest })
      : h("input", { id, name, type: "text", ...rest });
  const err = h("p", { class: "field-error", id: id + "-err", "aria-live": "polite" });
  input.setAttribute("aria-describedby", id + "-err");
  if (attrs.type === "checkbox") {
    return h("div", { class: "field check", "data-field": name }, h("label", { for: id }, input, " ", label), hint ? h("p", { class: "hint" }, hint) : null, err);
  }
  return h("div", { class: "field", "data-field": name }, h("label", { for: id }, label), input, hint ? h("p", { class: "hint" }, hint) : null, err);
}

export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type !== "file") out[el.name] = el.value.trim();
  }
  return out;
}

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  const g = form.querySelector(".form-error");
  if (g) g.textContent = "";
}

/** Shows an error next to the field it concerns, or at the form's foot. */
export function showError(form, err, aliases = {}) {
  let name = err.field;
  if (name && aliases[name]) name = aliases[name];
  const box = name && form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (box) {
    box.querySelector(".field-error").textContent = err.message;
    const input = box.querySelector("input,select,textarea");
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  } else {
    let g = form.querySelector(".form-error");
    if (!g) { g = h("p", { class: "form-error", role: "alert" }); form.append(g); }
    g.textContent = err.message;
  }
}

/**
 * Wires a form: client checks (HTML constraints plus `check(values)` giving
 * {field: message}), then `submit(values)`; server errors land by field.
 */
export function onSubmit(form, submit, check, aliases) {
  form.noValidate = true;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    for (const el of form.elements) {
      if (el.name && el.willValidate && !el.checkValidity()) {
        showError(form, { field: el.name, message: el.validationMessage });
        return;
      }
    }
    const values = formValues(form);
    const problems = check ? check(values) : null;
    if (problems) {
      const [f, m] = Object.entries(problems)[0];
      showError(form, { field: f, message: m });
      return;
    }
    const btn = form.querySelector("button[type=submit]");
    if (btn) btn.disabled = true;
    try {
      await submit(values);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showError(form, e, aliases);
    } finally {
      if (btn) btn.disabled = false;
    }
  });
  return form;
}

// ---------- router ----------

const routes = [];
export function route(pattern, render, opts = {}) {
  const keys = [];
  const re = new RegExp("^" + pattern.replace(/:([a-z]+)/g, (_, k) => { keys.push(k); return "([^/]+)"; }) + "/?$");
  routes.push({ re, keys, render, opts });
}

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

export async function render() {
  const app = $("#app");
  const path = location.pathname;
  let found = null;
  for (const r of routes) {
    const m = path.match(r.re);
    if (m) {
      const params = {};
      r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]); });
      found = { r, params };
      break;
    }
  }
  if (!state.loaded) await loadMe();
  renderNav();
  if (!found) {
    app.replaceChildren(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the start page")));
    document.title = "Not found · sikker";
    return;
  }
  const { r, params } = found;
  if ((r.opts.auth || r.opts.admin) && !state.me) {
    navigate("/login?next=" + encodeURIComponent(path + location.search), true);
    return;
  }
  if (r.opts.admin && state.me.role !== "admin") {
    app.replaceChildren(h("h1", {}, "Admins only"), h("p", {}, "This page needs an admin account."));
    return;
  }
  document.title = (r.opts.title || "sikker") + " · sikker";
  const page = h("div", { class: "page" });
  app.replaceChildren(page);
  try {
    await r.render(page, params, new URLSearchParams(location.search));
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      page.append(h("p", { class: "form-error", role: "alert" }, e.message));
    }
  }
  if (document.activeElement === document.body) app.focus({ preventScroll: true });
}

export function renderNav() {
  const nav = $("#nav");
  const me = state.me;
  const link = (href, text) => h("a", { href, "aria-current": location.pathname === href ? "page" : null }, text);
  const items = [link("/", "Lookup"), link("/privacy", "Privacy")];
  if (me) {
    items.push(link("/dashboard", "Dashboard"), link("/keys", "API keys"), link("/report", "Report"), link("/alerts", "Alerts"), link("/privacy-centre", "My data"), link("/sessions", "Sessions"));
    if (me.role === "admin") items.push(link("/admin", "Admin"));
    items.push(h("button", { type: "button", class: "linkish", onclick: logout }, "Sign out"));
  } else {
    items.push(link("/login", "Sign in"), link("/signup", "Sign up"));
  }
  nav.replaceChildren(...items);
}

async function logout() {
  try { await api("POST", "/v1/session/logout", {}, { quiet: true }); } catch { /* already gone */ }
  state.me = null;
  toast("Signed out");
  navigate("/");
}

// ---------- theme ----------

export function initTheme() {
  const saved = localStorage.getItem("theme");
  if (saved) document.documentElement.dataset.theme = saved;
  $("#theme-toggle").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("theme", next);
  });
  const menu = $("#menu-toggle");
  menu.addEventListener("click", () => {
    const open = menu.getAttribute("aria-expanded") !== "true";
    menu.setAttribute("aria-expanded", String(open));
    $("#nav").classList.toggle("open", open);
  });
}

export function initLinks() {
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a");
    if (!a || a.target || a.hasAttribute("download") || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("//") || /\.[a-z0-9]+$/i.test(href.split(/[?#]/)[0])) return;
    ev.preventDefault();
    $("#nav").classList.remove("open");
    $("#menu-toggle").setAttribute("aria-expanded", "false");
    navigate(href);
  });
  window.addEventListener("popstate", render);
}

/** The `#token=…` of an e-mailed link; removed from the address bar at once. */
export function hashToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) history.replaceState(null, "", location.pathname + location.search);
  return m ? decodeURIComponent(m[1]) : null;
}

export function table(head, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

/** Asks before a destructive action, with a real dialog (keyboard friendly). */
export function confirmDialog(text, okLabel = "Confirm") {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "dialog", "aria-label": "Confirm" },
      h("p", {}, text),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", onclick: () => { dlg.close(); resolve(true); } }, okLabel),
        h("button", { type: "button", class: "secondary", onclick: () => { dlg.close(); resolve(false); } }, "Cancel")));
    dlg.addEventListener("cancel", () => resolve(false));
    dlg.addEventListener("close", () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  });
}
