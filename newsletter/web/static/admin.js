// The dashboard's one script: live send progress over server-sent events. Every page works
// without it (the counts are in the HTML when it is served); this only keeps them current.
"use strict";
(function () {
  var note = document.getElementById("live-note");
  if (!note || !note.dataset.events || !window.EventSource) return;
  var source = new EventSource(note.dataset.events);
  source.addEventListener("progress", function (event) {
    var p = JSON.parse(event.data);
    var row = document.querySelector('tr[data-send="' + String(Number(p.id)) + '"]');
    if (!row) return;
    var set = function (field, value) {
      var cell = row.querySelector('[data-field="' + field + '"]');
      if (cell) cell.textContent = String(value);
    };
    set("status", p.status);
    set("done", p.done);
    set("recipients", p.recipients);
    set("sent", p.sent);
    set("failed", p.failed);
    set("bounced", p.bounced);
    set("pending", p.pending + p.sending);
    var bar = row.querySelector("progress");
    if (bar) { bar.max = Math.max(1, p.recipients); bar.value = p.done; }
  });
  source.addEventListener("done", function () {
    source.close();
    note.textContent = "All sends are finished.";
  });
})();
