// The account page (your API tokens, your password) and the admin's users page.
import { csrfHeaders, flash, h, readApiError } from "./dom.js";

const $ = (id) => document.getElementById(id);

async function send(method, url, body) {
  const res = await fetch(url, {
    method,
    headers: csrfHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await readApiError(res);
  return res.json();
}

function showError(box, err) {
  if (!box) return flash(err.message, "error");
  box.hidden = false;
  box.querySelector(".form-error__message").textContent = err.message;
}

// --- tokens ---------------------------------------------------------------------------------------------
const tokenForm = $("token-form");
if (tokenForm) {
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("token-error").hidden = true;
    const name = $("token-name").value.trim();
    if (!name) return showError($("token-error"), { message: "Say what the token is for, such as \"ci deploy\"." });
    const user = $("token-user") ? $("token-user").value : undefined;
    try {
      const token = await send("POST", "/api/v1/tokens", { name, user });
      $("token-once-value").textContent = token.token;
      $("token-once").hidden = false;
      $("token-name").value = "";
      addTokenRow(token);
    } catch (err) {
      showError($("token-error"), err);
    }
  });
  for (const button of document.querySelectorAll("[data-revoke]")) wireRevoke(button);
}

function addTokenRow(token) {
  const body = $("tokens-body");
  body.querySelector(".empty-row")?.remove();
  const revoke = h("button", { class: "btn btn--danger btn--small", type: "button", "data-revoke": String(token.id),
    "data-testid": "token-revoke" }, "Revoke");
  wireRevoke(revoke);
  body.prepend(h("tr", { "data-token-id": String(token.id) },
    h("td", { class: "strong" }, token.name), h("td", {}, token.user), h("td", { class: "mono" }, `${token.prefix}…`),
    h("td", {}, "just now"), h("td", {}, h("span", { class: "muted" }, "never")), h("td", { class: "actions" }, revoke)));
}

function wireRevoke(button) {
  button.addEventListener("click", async () => {
    if (!window.confirm("Revoke this token? Scripts using it stop working at once.")) return;
    try {
      await send("DELETE", `/api/v1/tokens/${button.dataset.revoke}`);
      window.location.reload();
    } catch (err) {
      showError($("token-error"), err);
    }
  });
}

// --- own password ------------------------------------------------------------------------------------------
const passwordForm = $("password-form");
if (passwordForm) {
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const state = $("password-state");
    if ($("pw-new").value !== $("pw-new2").value) {
      state.textContent = "The two new passwords differ.";
      return;
    }
    try {
      await send("POST", "/api/v1/me/password", { current: $("pw-current").value, new: $("pw-new").value });
      state.textContent = "Password changed. Sign in again with it.";
      window.setTimeout(() => window.location.assign("/login"), 1200);
    } catch (err) {
      state.textContent = err.message;
    }
  });
}

// --- users (admin) -----------------------------------------------------------------------------------------
const userForm = $("user-form");
if (userForm) {
  userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("user-error").hidden = true;
    try {
      await send("POST", "/api/v1/users", {
        name: $("user-name").value.trim(), role: $("user-role").value, password: $("user-password").value,
      });
      window.location.reload();
    } catch (err) {
      showError($("user-error"), err);
    }
  });
  for (const select of document.querySelectorAll("[data-role-for]")) {
    const before = select.value;
    select.addEventListener("change", async () => {
      try {
        await send("PATCH", `/api/v1/users/${select.dataset.roleFor}`, { role: select.value });
        flash("Role changed; that person signs in again with it.", "info");
      } catch (err) {
        select.value = before;
        showError($("user-error"), err);
      }
    });
  }
  for (const button of document.querySelectorAll("[data-toggle-disabled]")) {
    button.addEventListener("click", async () => {
      const disable = button.dataset.disabled !== "true";
      try {
        await send("PATCH", `/api/v1/users/${button.dataset.toggleDisabled}`, { disabled: disable });
        window.location.reload();
      } catch (err) {
        showError($("user-error"), err);
      }
    });
  }
}
