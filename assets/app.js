"use strict";
// Same-origin only: the page asks its own server whether it is healthy.
document.addEventListener("DOMContentLoaded", async () => {
  const el = document.getElementById("status");
  try {
    const r = await fetch("/healthz", { cache: "no-store" });
    el.textContent = r.ok ? "running" : "unavailable (" + r.status + ")";
    el.className = r.ok ? "ok" : "down";
  } catch {
    el.textContent = "unreachable";
    el.className = "down";
  }
});
