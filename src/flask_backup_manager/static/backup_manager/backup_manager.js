/* Backup Manager pages: local times, delete and cancel confirmation, and live updates while a
   backup is queued or running (polls the JSON API once a second): status, phase, elapsed time,
   time left, the worker warning. Plain JS, no dependencies. Every page works without it; it
   only makes them nicer. The texts are the templates' (_macros.html): keep the two in step. */
(function () {
  "use strict";

  var ACTIVE = ["queued", "running"];

  function csrfToken() {
    /* Ours first: a host layout may carry a csrf-token meta tag of its own. */
    var root = document.querySelector(".bm[data-csrf-token]");
    if (root) return root.getAttribute("data-csrf-token");
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* For host scripts: call the JSON API with the session cookie and the CSRF header. */
  function api(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  /* The server's clock minus this browser's, from the Date of the API's answers: a running
     backup's elapsed time is the server's even when this machine's clock is off. Kept at 0
     within 2 s (a Date has whole seconds only). */
  var skew = 0;

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    }).then(function (r) {
      var date = Date.parse(r.headers.get("Date") || "");
      if (!isNaN(date) && Math.abs(date - Date.now() - skew) > 2000) skew = date - Date.now();
      if (!r.ok) {
        var e = new Error("HTTP " + r.status);
        e.status = r.status;
        throw e;
      }
      return r.json();
    });
  }

  function humanSize(n) {
    if (n === null || n === undefined) return "\u2014";
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    var size = n;
    for (var i = 0; i < units.length; i++) {
      if (size < 1024 || i === units.length - 1) {
        return i === 0 ? n + " bytes" : size.toFixed(1) + " " + units[i];
      }
      size /= 1024;
    }
  }

  function localTime(el) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    el.textContent = d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
    el.title = el.getAttribute("datetime") + " (UTC)";
  }

  function timeNode(iso) {
    if (!iso) {
      var dash = document.createElement("span");
      dash.className = "bm-muted";
      dash.textContent = "\u2014";
      return dash;
    }
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.textContent = iso.slice(0, 19).replace("T", " ") + " UTC";
    localTime(t);
    return t;
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function setBadge(badge, status) {
    if (!badge) return;
    badge.textContent = status;
    badge.className = "bm-badge bm-badge-" + status;
  }

  function setTime(root, name, iso) {
    var el = field(root, name);
    if (!el) return;
    el.textContent = "";
    el.appendChild(timeNode(iso));
  }

  function fmt(n) {
    return (n || 0).toLocaleString("en-US");
  }

  function count(n, noun) {
    return fmt(n) + " " + noun + (n === 1 ? "" : "s");
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  /* 12.3 s, 4 min 05 s, 2 h 10 min (the duration macro) */
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "\u2014";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var s = Math.floor(seconds);
    if (s < 3600) return Math.floor(s / 60) + " min " + pad(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " min";
  }

  /* about 40 s left, about 3 min left (the eta macro) */
  function eta(seconds) {
    if (seconds < 60) return "about " + Math.max(5, Math.round(seconds / 5) * 5) + " s left";
    return "about " + Math.round(seconds / 60) + " min left";
  }

  function progressText(p) {
    var text = p.percent + "%";
    if (p.tables_total) {
      text += " \u00b7 " + p.tables_done + " of " + count(p.tables_total, "table") + ", " +
        fmt(p.rows_done) + " of " + count(p.rows_total, "row");
    }
    return text;
  }

  /* what the job does now: its phase, the time since it started, a rough time left */
  function renderPhase(root, b) {
    var p = b.progress;
    var phase = field(root, "phase");
    if (phase) phase.textContent = p.phase || "";
    var elapsed = field(root, "elapsed");
    if (elapsed) {
      var started = b.started_at ? Date.parse(b.started_at) : NaN;
      elapsed.hidden = b.status !== "running" || isNaN(started);
      if (!elapsed.hidden) {
        var seconds = Math.max(0, (Date.now() + skew - started) / 1000);
        elapsed.textContent = "\u00b7 " + duration(seconds) + " elapsed";
      }
    }
    var left = field(root, "eta");
    if (left) {
      left.hidden = p.eta === null || p.eta === undefined || b.status !== "running";
      if (!left.hidden) left.textContent = "\u00b7 " + eta(p.eta);
    }
  }

  /* the worker warning of the API's answer (absent: leave the page's as it is) */
  function renderWarning(root, b) {
    var box = root.querySelector('[data-testid="worker-warning"]');
    if (!box || (b.status === "queued" && !("warning" in b))) return;
    var text = b.status === "queued" ? b.warning : null;
    box.hidden = !text;
    var span = field(box, "warning");
    if (span && text) {
      span.textContent = "";
      text.split("`").forEach(function (part, i) {
        var node = i % 2 ? document.createElement("code") : document.createTextNode(part);
        if (i % 2) node.textContent = part;
        span.appendChild(node);
      });
    }
  }

  function renderBackup(root, b) {
    var active = ACTIVE.indexOf(b.status) >= 0;
    root.setAttribute("data-status", b.status);
    setBadge(field(root, "status"), b.status);
    var p = b.progress;
    var bar = field(root, "percent");
    if (bar) {
      bar.value = p.percent;
      bar.textContent = p.percent + "%";
    }
    var text = field(root, "progress-text");
    if (text) text.textContent = progressText(p);
    renderPhase(root, b);
    renderWarning(root, b);
    toggle(root, "phase-line", !active);
    setTime(root, "started_at", b.started_at);
    setTime(root, "finished_at", b.finished_at);
    var took = field(root, "duration");
    if (took) took.textContent = duration(b.duration);
    var size = field(root, "size");
    if (size) size.textContent = humanSize(b.size);
    var sha = field(root, "sha256");
    if (sha) sha.textContent = b.sha256 || "\u2014";
    var filename = field(root, "filename");
    if (filename) filename.textContent = b.filename || "\u2014";
    var error = field(root, "error");
    if (error) error.textContent = b.error || "";
    toggle(root, "error", b.status !== "failed" || !b.error);
    toggle(root, "download", b.status !== "succeeded");
    toggle(root, "cancel-form", !active);
    toggle(root, "retry-form", b.status !== "failed" && b.status !== "cancelled");
    toggle(root, "delete-form", active);
  }

  function toggle(root, testid, hidden) {
    var el = root.querySelector('[data-testid="' + testid + '"]');
    if (el) el.hidden = hidden;
  }

  function renderLogs(tbody, logs) {
    if (!tbody || tbody.getAttribute("data-count") === String(logs.length)) return;
    tbody.setAttribute("data-count", String(logs.length));
    tbody.textContent = "";
    if (!logs.length) {
      var empty = document.createElement("tr");
      var cell = document.createElement("td");
      cell.colSpan = 3;
      cell.className = "bm-muted";
      cell.textContent = "No log lines yet.";
      empty.appendChild(cell);
      tbody.appendChild(empty);
      return;
    }
    logs.forEach(function (line) {
      var tr = document.createElement("tr");
      tr.className = "bm-log-" + line.level;
      var at = document.createElement("td");
      at.appendChild(timeNode(line.at));
      var level = document.createElement("td");
      var span = document.createElement("span");
      span.className = "bm-level bm-level-" + line.level;
      span.textContent = line.level;
      level.appendChild(span);
      var message = document.createElement("td");
      message.textContent = line.message;
      tr.appendChild(at);
      tr.appendChild(level);
      tr.appendChild(message);
      tbody.appendChild(tr);
    });
  }

  function setText(root, name, text) {
    var el = field(root, name);
    if (el) el.textContent = text;
  }

  /* The manifest's summary (the manifest_facts macro): filled in once a followed backup has
     succeeded, from GET .../manifest. */
  function renderManifest(section, m) {
    var app = m.app || {};
    var source = m.source || {};
    var red = m.redaction;
    var ver = m.verification;
    setText(section, "app_name", app.name || "\u2014");
    setText(section, "app_version", app.version || "(no version)");
    setText(section, "schema_revision", m.schema_revision || "none");
    setText(section, "source", (source.dialect || "\u2014") + " " + (source.server_version || ""));
    var tables = Object.keys(m.tables || {}).length;
    setText(section, "tables", count(tables, "table") + ", " + count(m.rows || 0, "row"));
    setText(section, "redaction", red ? red.profile : "none: a full copy");
    var rules = field(section, "rules");
    var keys = red && red.rules ? Object.keys(red.rules) : []; // the manifest's order, as the page's
    if (keys.length && !rules) {
      rules = document.createElement("span");
      rules.className = "bm-muted bm-rules";
      rules.setAttribute("data-field", "rules");
      field(section, "redaction").parentNode.appendChild(rules);
    }
    if (rules) {
      rules.textContent = keys.map(function (k) { return k + ": " + red.rules[k]; }).join("; ");
      rules.hidden = !keys.length;
    }
    var v = field(section, "verification");
    if (v) {
      v.textContent = ver ? ver.summary : "\u2014";
      if (ver && ver.loaded) {
        var how = document.createElement("span");
        how.className = "bm-muted";
        how.textContent = "(" + ver.how + ")";
        v.appendChild(document.createTextNode(" "));
        v.appendChild(how);
      }
    }
    section.hidden = false;
  }

  function loadManifest() {
    var section = document.querySelector('.bm [data-testid="manifest"][data-manifest-url]');
    if (!section || !section.hidden) return;
    getJSON(section.getAttribute("data-manifest-url")).then(function (m) {
      renderManifest(section, m);
    }, function () {});
  }

  /* The detail page: poll the backup and its log until it has finished. */
  function watchDetail(root) {
    var url = root.getAttribute("data-poll-url");
    var logsUrl = root.getAttribute("data-logs-url");
    if (!url) return;
    var tbody = document.querySelector('[data-testid="log"] [data-field="logs"]');
    var failures = 0;

    function tick() {
      Promise.all([getJSON(url), getJSON(logsUrl)]).then(function (res) {
        failures = 0;
        renderBackup(root, res[0]);
        renderLogs(tbody, res[1].logs);
        if (ACTIVE.indexOf(res[0].status) >= 0) {
          setTimeout(tick, 1000);
        } else {
          if (res[0].status === "succeeded") {
            loadManifest();
            // a file to share now: the link form (present when the user may share)
            toggle(document, "link-form", false);
          }
          // The job writes its last log line just after the status: fetch the log once more.
          setTimeout(function () {
            getJSON(logsUrl).then(function (r) { renderLogs(tbody, r.logs); }, function () {});
          }, 1000);
        }
      }).catch(function (e) {
        if (e.status === 404) return; // deleted meanwhile: nothing left to watch
        failures += 1;
        setTimeout(tick, Math.min(1000 * failures, 10000));
      });
    }
    setTimeout(tick, 1000);
  }

  /* The list: update the rows of backups that are still being made. */
  function watchRow(row) {
    var url = row.getAttribute("data-poll-url");
    function tick() {
      getJSON(url).then(function (b) {
        var active = ACTIVE.indexOf(b.status) >= 0;
        row.setAttribute("data-status", b.status);
        var badge = field(row, "status");
        setBadge(badge, b.status);
        if (badge && b.status === "failed" && b.error) badge.title = b.error;
        var phase = field(row, "phase");
        if (phase) {
          phase.textContent = b.progress.phase || "";
          phase.hidden = b.status !== "running" || !b.progress.phase;
        }
        var error = field(row, "error");
        if (error) {
          error.textContent = b.error || "";
          error.hidden = b.status !== "failed" || !b.error;
        }
        var size = field(row, "size");
        if (size) size.textContent = humanSize(b.size);
        var took = field(row, "duration");
        if (took) took.textContent = duration(b.duration);
        toggle(row, "download", b.status !== "succeeded");
        toggle(row, "delete-form", active);
        if (active) setTimeout(tick, 2000);
      }).catch(function (e) {
        if (e.status !== 404) setTimeout(tick, 5000);
      });
    }
    setTimeout(tick, 2000);
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // "Copy" next to a new link: the clipboard API where the page may use it (https, or
  // 127.0.0.1), else the selected text and the older copy command
  function copyButtons() {
    document.querySelectorAll(".bm button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.querySelector(button.getAttribute("data-copy"));
        var said = button.parentNode.querySelector('[data-testid="copied"]');
        if (!field) return;
        function shown() { if (said) said.hidden = false; }
        field.select();
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(shown, function () {
            if (document.execCommand("copy")) shown();
          });
        } else if (document.execCommand("copy")) {
          shown();
        }
      });
    });
  }

  function start() {
    document.querySelectorAll(".bm time[datetime]").forEach(localTime);
    confirmForms();
    copyButtons();
    var detail = document.querySelector('.bm [data-testid="backup-detail"][data-poll-url]');
    if (detail) watchDetail(detail);
    document.querySelectorAll('.bm [data-testid="backup-row"][data-poll-url]').forEach(watchRow);
  }

  window.BackupManager = { api: api, csrfToken: csrfToken };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
