// Entry point: registers the pages, the theme, the links and the
// first-party analytics consent banner (off until granted).

import { $, h, render, initTheme, initLinks, cookie } from "./core.js";
import "./public.js";
import { recordConsent } from "./user.js";
import "./admin.js";

function consentBanner() {
  const box = $("#consent");
  if (cookie("ska_analytics_consent")) { box.hidden = true; return; }
  const answer = async (granted) => {
    box.hidden = true;
    // The cookie is set before the request, so the choice holds even if logging it fails.
    try { await recordConsent(granted); } catch { /* the cookie keeps the choice */ }
  };
  box.replaceChildren(
    h("p", { id: "consent-text" }, "May we count your visits with first-party analytics on this server? Nothing is shared and nothing loads from elsewhere. Analytics stay off unless you allow them. ", h("a", { href: "/privacy" }, "Details")),
    h("div", { class: "row" },
      h("button", { type: "button", id: "consent-yes", onclick: () => answer(true) }, "Allow"),
      h("button", { type: "button", id: "consent-no", class: "secondary", onclick: () => answer(false) }, "No thanks")));
  box.setAttribute("role", "region");
  box.setAttribute("aria-labelledby", "consent-text");
  box.hidden = false;
}

initTheme();
initLinks();
render().then(consentBanner);
