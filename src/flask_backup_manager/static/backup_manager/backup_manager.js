/* Backup Manager pages: local times, delete confirmation, and live updates while a backup is
   queued or running (polls the JSON API once a second). Plain JS, no dependencies. Every page
   works without it; it only makes them nicer. */
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

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    }).then(function (r) {
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
    if (text) {
      text.textContent = p.percent + "% \u00b7 " + p.tables_done + " of " + p.tables_total +
        " tables, " + fmt(p.rows_done) + " of " + fmt(p.rows_total) + " rows";
    }
    setTime(root, "started_at", b.started_at);
    setTime(root, "finished_at", b.finished_at);
    var duration = field(root, "duration");
    if (duration) {
      duration.textContent = b.duration === null ? "\u2014" : b.duration.toFixed(1) + " s";
    }
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
        row.setAttribute("data-status", b.status);
        setBadge(field(row, "status"), b.status);
        var size = field(row, "size");
        if (size) size.textContent = humanSize(b.size);
        if (ACTIVE.indexOf(b.status) >= 0) setTimeout(tick, 2000);
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

  function start() {
    document.querySelectorAll(".bm time[datetime]").forEach(localTime);
    confirmForms();
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
