// The Engage console's only script: a form marked `data-upload` sends its
// chosen file as the request body (so a large codes file or component is
// not re-encoded) with the session's CSRF token in a header, shows the
// upload's progress, and puts the server's answer (an HTML fragment the
// server rendered and escaped) into the element `data-result` names.
// Without a chosen file the form is posted as usual (a pasted code list).
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-upload")) return;
  const input = form.querySelector("[data-file]");
  const file = input && input.files && input.files[0];
  if (!file) {
    if (input && input.required) return; // the browser says what is missing
    return; // a plain post: the pasted list
  }
  event.preventDefault();
  const result = document.getElementById(form.dataset.result);
  const progress = form.querySelector("[data-progress]");
  const button = form.querySelector("button[type=submit]");
  let url = form.action;
  if (form.dataset.query) {
    const field = form.elements.namedItem(form.dataset.query);
    const q = new URLSearchParams();
    q.set(form.dataset.query, field ? field.value.trim() : "");
    url += (url.includes("?") ? "&" : "?") + q.toString();
  }
  const type = form.dataset.contentType ||
    (file.name.toLowerCase().endsWith(".csv") ? "text/csv" : "text/plain");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", url);
  xhr.setRequestHeader("Content-Type", type);
  xhr.setRequestHeader("X-CSRF-Token", form.elements.namedItem("csrf").value);
  if (progress) {
    progress.hidden = false;
    progress.value = 0;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    });
  }
  if (button) button.disabled = true;
  const done = (html) => {
    if (button) button.disabled = false;
    if (progress) progress.value = 100;
    if (result) {
      result.innerHTML = html;
      result.setAttribute("tabindex", "-1");
      result.focus();
    }
  };
  xhr.addEventListener("load", () => {
    if (xhr.status === 401 || xhr.responseURL.includes("/console/sign-in")) {
      window.location.assign("/console/sign-in");
      return;
    }
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (type.startsWith("text/html") && xhr.responseText.trim().startsWith("<!doctype")) {
      // A whole page (an error page): show its message only.
      const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const err = doc.querySelector(".error");
      done('<p class="error" role="alert"></p>');
      result.querySelector(".error").textContent = err ? err.textContent : "The upload failed (HTTP " + xhr.status + ").";
      return;
    }
    done(xhr.responseText);
    const stock = document.querySelector("[data-testid=stock]");
    const now = result && result.querySelector("[data-stock]");
    if (stock && now) {
      stock.textContent = now.dataset.stock;
      const line = stock.closest("[data-threshold]");
      const warn = line && line.querySelector(".warn-text");
      if (warn && line.dataset.threshold !== "") {
        warn.hidden = Number(now.dataset.stock) > Number(line.dataset.threshold);
      }
    }
  });
  xhr.addEventListener("error", () => {
    done('<p class="error" role="alert">The upload did not reach the server; check the connection and try again.</p>');
  });
  xhr.send(file);
});
