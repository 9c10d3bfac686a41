// rnnkit explore: colours a text by one unit of a character LM, and ranks units.
// The data (a "bundle") comes from rnnkit.explore.bundle: activations as bytes, unit-major,
// v = lo + q (hi - lo) / 255. Colours and the unit search mirror rnnkit.explore.analysis
// (colour, separation); tests/explore checks this page against them in a real browser.
(function () {
  "use strict";

  var POSITIVE = [214, 96, 77], NEGATIVE = [67, 147, 195], GATE = [90, 174, 97];
  var KIND_NAMES = {
    h: "hidden state h", c: "cell state c", i: "input gate i", f: "forget gate f",
    g: "candidate g", o: "output gate o", r: "reset gate r", z: "update gate z", n: "candidate n"
  };
  var LAYER_COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a"];
  var SVGNS = "http://www.w3.org/2000/svg";

  var config = JSON.parse(document.getElementById("config").textContent);
  var B = null;          // the bundle
  var slots = [];        // decoded slots: kind, layer, direction, units, q, lo, hi, scale, sums
  var spans = [];
  var T = 0;
  var state = { slot: 0, unit: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function visible(ch) { return ch === " " ? "␣" : ch === "\n" ? "↵" : ch === "\t" ? "⇥" : ch; }
  function fmt(x, d) { return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(d); }
  function slotName(s) {
    var dir = B.model.directions > 1 ? (s.direction ? " ←" : " →") : "";
    return "L" + s.layer + dir + " " + s.kind;
  }

  function message(text, info) {
    var m = $("message");
    m.textContent = text || "";
    m.className = "message" + (info ? " info" : "");
    m.hidden = !text;
  }

  // ---- data ------------------------------------------------------------------------------------
  function decode(b64) {
    var bin = atob(b64), a = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
    return a;
  }

  function prepare(s) {
    var q = decode(s.q), H = s.units, sum = new Float64Array(H), sumsq = new Float64Array(H);
    for (var u = 0; u < H; u++) {
      var a = 0, b = 0, off = u * T;
      for (var t = 0; t < T; t++) { var v = q[off + t]; a += v; b += v * v; }
      sum[u] = a; sumsq[u] = b;
    }
    return { kind: s.kind, layer: s.layer, direction: s.direction, units: H, style: s.style,
             scale: s.scale, lo: s.lo, hi: s.hi, q: q, sum: sum, sumsq: sumsq };
  }

  function value(s, unit, t) { return s.lo[unit] + s.q[unit * T + t] * (s.hi[unit] - s.lo[unit]) / 255; }

  // analysis.colour: white at 0, the end colour at +-scale
  function colour(v, style, scale) {
    var t, end;
    if (style === "gate") { t = Math.min(Math.max(v / scale, 0), 1); end = GATE; }
    else {
      t = Math.min(Math.max(v / scale, -1), 1);
      end = t >= 0 ? POSITIVE : NEGATIVE; t = Math.abs(t);
    }
    return [0, 1, 2].map(function (k) { return Math.floor(255 + t * (end[k] - 255) + 0.5); });
  }
  function rgb(c) { return "rgb(" + c[0] + ", " + c[1] + ", " + c[2] + ")"; }

  // ---- the text --------------------------------------------------------------------------------
  function renderText() {
    var box = $("text"), frag = document.createDocumentFragment();
    spans = new Array(T);
    for (var t = 0; t < T; t++) {
      var ch = B.text[t], sp = el("span");
      sp.dataset.i = t;
      if (ch === "\n") { sp.textContent = "↵\n"; sp.className = "nl"; }
      else sp.textContent = ch;
      spans[t] = sp;
      frag.appendChild(sp);
    }
    box.textContent = "";
    box.appendChild(frag);
  }

  function recolour() {
    var s = slots[state.slot], u = state.unit, scale = s.scale[u];
    for (var t = 0; t < T; t++) spans[t].style.backgroundColor = rgb(colour(value(s, u, t), s.style, scale));
    var lo = s.style === "gate" ? 0 : -scale, hi = scale;
    var bar = el("span", "bar");
    var stops = s.style === "gate" ? [rgb(colour(0, "gate", 1)), rgb(GATE)] : [rgb(NEGATIVE), "rgb(255, 255, 255)", rgb(POSITIVE)];
    bar.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
    var legend = $("legend");
    legend.textContent = "";
    legend.appendChild(el("span", "", (+lo.toFixed(2)).toString()));
    legend.appendChild(bar);
    legend.appendChild(el("span", "", (+hi.toFixed(2)).toString()));
    var lo_u = s.lo[u], hi_u = s.hi[u], info = $("unit-info");
    info.textContent = "";
    info.appendChild(el("b", "", slotName(s) + " unit " + u));
    info.appendChild(document.createTextNode(" · " + (KIND_NAMES[s.kind] || s.kind) +
      " · over this text from " + lo_u.toFixed(3) + " to " + hi_u.toFixed(3)));
    var best = bestFeature(state.slot, u);
    if (best) info.appendChild(document.createTextNode(" · " + best));
  }

  function bestFeature(slot, unit) {
    var out = "";
    B.features.forEach(function (f) {
      f.hits.forEach(function (h) {
        if (h.slot === slot && h.unit === unit && !out) out = f.name + " r = " + fmt(h.score, 2);
      });
    });
    return out;
  }

  function select(slot, unit, keepHash) {
    var s = slots[slot];
    state.slot = slot; state.unit = Math.max(0, Math.min(unit, s.units - 1));
    $("layer").value = s.layer; $("direction").value = s.direction; $("kind").value = s.kind;
    var input = $("unit");
    input.max = s.units - 1; input.value = state.unit;
    recolour();
    markCurrent();
    if (!keepHash && history.replaceState) {
      history.replaceState(null, "", "#unit=" + [s.kind, s.layer, s.direction, state.unit].join(","));
    }
  }

  function findSlot(kind, layer, direction) {
    for (var i = 0; i < slots.length; i++) {
      var s = slots[i];
      if (s.kind === kind && s.layer === layer && s.direction === direction) return i;
    }
    return -1;
  }

  function fromControls() {
    var slot = findSlot($("kind").value, +$("layer").value, +$("direction").value);
    if (slot >= 0) select(slot, +$("unit").value || 0);
  }

  function fillControls() {
    function fill(id, values, label) {
      var sel = $(id);
      sel.textContent = "";
      values.forEach(function (v) { var o = el("option", "", label(v)); o.value = v; sel.appendChild(o); });
    }
    var layers = [], kinds = [];
    for (var l = 0; l < B.model.layers; l++) layers.push(l);
    slots.forEach(function (s) { if (kinds.indexOf(s.kind) < 0) kinds.push(s.kind); });
    fill("layer", layers, function (l) { return String(l); });
    fill("direction", B.model.directions > 1 ? [0, 1] : [0], function (d) { return d ? "backward ←" : "forward →"; });
    fill("kind", kinds, function (k) { return KIND_NAMES[k] || k; });
    $("direction-label").hidden = B.model.directions < 2;
  }

  // ---- hover: the next-character predictions ------------------------------------------------------
  function showTooltip(t, target) {
    var P = B.predict, k = P.k, tip = $("tooltip");
    tip.textContent = "";
    tip.dataset.i = t;
    tip.appendChild(el("div", "head", "after “" + visible(B.text[t]) + "” (character " + t + "), the model predicts"));
    var table = el("table"), next = t + 1 < T ? B.text[t + 1] : null;
    for (var j = 0; j < k; j++) {
      var id = P.ids[t * k + j], p = P.p[t * k + j], ch = B.model.vocab[id];
      var tr = el("tr", "pred" + (ch === next ? " actual" : ""));
      tr.dataset.char = ch; tr.dataset.p = p;
      tr.appendChild(el("td", "ch", visible(ch)));
      var bar = el("td", "barcell"), fill = el("div");
      fill.style.width = Math.round(p * 100) + "%";
      bar.appendChild(fill);
      tr.appendChild(bar);
      tr.appendChild(el("td", "p", p.toFixed(3)));
      table.appendChild(tr);
    }
    tip.appendChild(table);
    if (next !== null) {
      tip.appendChild(el("div", "foot", "actual next “" + visible(next) + "”: p = " + P.next_p[t].toFixed(3)));
    }
    var s = slots[state.slot];
    tip.appendChild(el("div", "value", slotName(s) + " unit " + state.unit + " = " + value(s, state.unit, t).toFixed(3)));
    tip.hidden = false;
    var r = target.getBoundingClientRect(), w = tip.offsetWidth, h = tip.offsetHeight;
    var x = Math.min(r.left, window.innerWidth - w - 8), y = r.bottom + 6;
    if (y + h > window.innerHeight - 4) y = r.top - h - 6;
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
  }

  // ---- unit search: analysis.separation on the bytes ------------------------------------------
  function search(a, b) {
    var eps = B.search.eps, nIn = b - a, nOut = T - nIn, hits = [];
    slots.forEach(function (s, si) {
      for (var u = 0; u < s.units; u++) {
        var off = u * T, sIn = 0, qIn = 0;
        for (var t = a; t < b; t++) { var v = s.q[off + t]; sIn += v; qIn += v * v; }
        var sOut = s.sum[u] - sIn, qOut = s.sumsq[u] - qIn, step = (s.hi[u] - s.lo[u]) / 255;
        var mIn = sIn / nIn, mOut = sOut / nOut;
        var vIn = Math.max(qIn / nIn - mIn * mIn, 0) * step * step;
        var vOut = Math.max(qOut / nOut - mOut * mOut, 0) * step * step;
        var d = (mIn - mOut) * step / Math.sqrt((vIn + vOut) / 2 + eps * eps);
        hits.push({ slot: si, unit: u, score: d });
      }
    });
    hits.sort(function (x, y) { return Math.abs(y.score) - Math.abs(x.score) || x.slot - y.slot || x.unit - y.unit; });
    return hits.slice(0, B.search.top);
  }

  function hitList(list, hits, label) {
    list.textContent = "";
    hits.forEach(function (h) {
      var li = el("li");
      li.dataset.slot = h.slot; li.dataset.unit = h.unit; li.dataset.score = h.score;
      var s = slots[h.slot];
      li.dataset.kind = s.kind; li.dataset.layer = s.layer; li.dataset.direction = s.direction;
      li.appendChild(el("span", "score", label + " = " + fmt(h.score, 2)));
      li.appendChild(document.createTextNode(slotName(s) + " unit " + h.unit));
      li.addEventListener("click", function () { select(h.slot, h.unit); });
      list.appendChild(li);
    });
    markCurrent();
  }

  function selectionRange() {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    var r = sel.getRangeAt(0), box = $("text");
    if (!box.contains(r.startContainer) || !box.contains(r.endContainer)) return null;
    function index(node, offset, isEnd) {
      if (node === box) return offset;   // between spans: offset counts child elements
      var sp = node.nodeType === 1 ? node : node.parentNode;
      while (sp && sp.parentNode !== box) sp = sp.parentNode;
      if (!sp) return null;
      var i = +sp.dataset.i, len = (node.textContent || "").length;
      if (isEnd) return offset === 0 ? i : i + 1;
      return offset >= len && len > 0 ? i + 1 : i;
    }
    var a = index(r.startContainer, r.startOffset, false), b = index(r.endContainer, r.endOffset, true);
    if (a === null || b === null || b <= a) return null;
    return [a, b];
  }

  function onSelect() {
    var range = selectionRange();
    if (!range) return;
    var a = range[0], b = range[1], box = $("selection");
    box.dataset.start = a; box.dataset.end = b;
    box.textContent = "";
    if (b - a >= T) {
      box.textContent = "Leave some of the text out of the selection: the search compares inside with outside.";
      $("search-results").textContent = "";
      return;
    }
    var shown = B.text.slice(a, Math.min(b, a + 40)).replace(/\n/g, "↵");
    box.appendChild(document.createTextNode("characters " + a + "–" + (b - 1) + ": "));
    box.appendChild(el("code", "", shown + (b - a > 40 ? "…" : "")));
    hitList($("search-results"), search(a, b), "d");
  }

  function markCurrent() {
    document.querySelectorAll(".hits li").forEach(function (li) {
      li.classList.toggle("current", +li.dataset.slot === state.slot && +li.dataset.unit === state.unit);
    });
    document.querySelectorAll(".saturation circle").forEach(function (c) {
      c.classList.toggle("current", +c.dataset.slot === state.slot && +c.dataset.unit === state.unit);
    });
  }

  // ---- feature scan and saturation (computed in Python) ------------------------------------------
  function renderFeatures() {
    var box = $("features");
    box.textContent = "";
    B.features.forEach(function (f) {
      var div = el("div", "feature");
      div.dataset.feature = f.name;
      div.appendChild(el("h3", "", f.name));
      if (!f.hits.length) { div.appendChild(el("div", "note", f.note || "no unit")); box.appendChild(div); return; }
      var list = el("ol", "hits");
      div.appendChild(list);
      box.appendChild(div);
      hitList(list, f.hits.slice(0, 3), "r");
    });
  }

  function svg(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function renderSaturation() {
    var box = $("saturation");
    box.textContent = "";
    var byKind = {};
    B.saturation.forEach(function (g) { var k = slots[g.slot].kind; (byKind[k] = byKind[k] || []).push(g); });
    var kinds = Object.keys(byKind);
    if (!kinds.length) { box.appendChild(el("div", "hint", "This cell has no sigmoid gates.")); return; }
    var W = 114, M = 20, P = W - M - 6;
    kinds.forEach(function (kind) {
      var s = svg("svg", { width: W, height: W + 14, viewBox: "0 0 " + W + " " + (W + 14), "data-kind": kind });
      svg("rect", { x: M, y: 4, width: P, height: P, fill: "#f6f8fa", stroke: "#d8dee4" }, s);
      svg("line", { x1: M, y1: 4, x2: M + P, y2: 4 + P, stroke: "#d8dee4" }, s);
      var title = svg("text", { x: M + P / 2, y: W + 10, "text-anchor": "middle", fill: "#1f2328" }, s);
      title.textContent = KIND_NAMES[kind] || kind;
      [["0", M, 4 + P + 10], ["1", M + P, 4 + P + 10]].forEach(function (a) {
        var t = svg("text", { x: a[1], y: a[2], "text-anchor": "middle", fill: "#656d76" }, s); t.textContent = a[0];
      });
      var t1 = svg("text", { x: M - 4, y: 10, "text-anchor": "end", fill: "#656d76" }, s); t1.textContent = "1";
      byKind[kind].forEach(function (g) {
        var slot = slots[g.slot], fill = LAYER_COLOURS[(slot.layer * B.model.directions + slot.direction) % LAYER_COLOURS.length];
        for (var u = 0; u < g.left.length; u++) {
          var c = svg("circle", { cx: M + g.left[u] * P, cy: 4 + P - g.right[u] * P, r: 2.2, fill: fill, "fill-opacity": 0.55 }, s);
          c.dataset.slot = g.slot; c.dataset.unit = u;
          var tt = svg("title", {}, c);
          tt.textContent = slotName(slot) + " unit " + u + ": " + (100 * g.left[u]).toFixed(1) + "% < 0.1, " + (100 * g.right[u]).toFixed(1) + "% > 0.9";
        }
      });
      s.addEventListener("click", function (e) {
        var c = e.target;
        if (c.dataset && c.dataset.slot !== undefined) select(+c.dataset.slot, +c.dataset.unit);
      });
      box.appendChild(s);
    });
    if (B.model.layers * B.model.directions > 1) {
      var key = el("div", "hint key");
      slots.filter(function (s) { return s.kind === kinds[0]; }).forEach(function (s, i) {
        var sw = el("span", "", "● "); sw.style.color = LAYER_COLOURS[i % LAYER_COLOURS.length];
        key.appendChild(sw); key.appendChild(document.createTextNode(slotName(s).replace(" " + s.kind, "") + "  "));
      });
      box.appendChild(key);
    }
  }

  function renderSummary() {
    var m = B.model, H = m.hidden.c || m.hidden.h, loss = B.predict.loss;
    var text = (B.title ? B.title + " · " : "") + m.cell.toUpperCase() + ", " + m.layers + " layer" +
      (m.layers > 1 ? "s" : "") + (m.directions > 1 ? " × 2 directions" : "") + " × " + H + " units · " +
      T.toLocaleString("en") + " characters";
    if (loss !== null) text += " · " + loss.toFixed(3) + " nats/char (" + (loss / Math.LN2).toFixed(3) + " bits/char) on this text";
    $("summary").textContent = text;
  }

  function load(bundle) {
    B = bundle; T = B.text.length;
    slots = B.slots.map(prepare);
    renderText(); fillControls(); renderFeatures(); renderSaturation(); renderSummary();
    $("search-results").textContent = ""; $("selection").textContent = "Select some text.";
    $("input").value = B.text;
    var m = /^#unit=([a-z]),(\d+),(\d+),(\d+)$/.exec(location.hash), slot = -1;
    if (m) slot = findSlot(m[1], +m[2], +m[3]);
    if (slot >= 0) select(slot, +m[4], true);
    else select(state.slot < slots.length ? state.slot : 0, state.unit, true);
    document.body.dataset.ready = "1";
    document.body.dataset.loads = (+document.body.dataset.loads || 0) + 1;
    if (performance.mark && !performance.getEntriesByName("rnnkit-ready").length) performance.mark("rnnkit-ready");
  }

  // ---- new text ------------------------------------------------------------------------------
  function retrace(text) {
    if (!config.live) {
      message("Re-running the model needs the server: this file holds the trace of its own text. Run `rnnkit explore RUN_DIR` and open the address it prints.");
      return;
    }
    var max = B ? B.limits.max_chars : Infinity;
    if (!text.length) { message("The text is empty; type or load at least one character."); return; }
    if (text.length > max) {
      message("The text has " + text.length.toLocaleString("en") + " characters; the explorer traces at most " +
        max.toLocaleString("en") + " at a time (cut it, or load a part).");
      return;
    }
    message("Tracing " + text.length.toLocaleString("en") + " characters…", true);
    $("run").disabled = true;
    fetch("/api/trace", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text }) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) {
        if (!res.ok) { message(res.body.error || "the server refused the text"); return; }
        message(""); load(res.body);
      })
      .catch(function (err) { message("Could not reach the explorer's server: " + err); })
      .then(function () { $("run").disabled = false; });
  }

  function wire() {
    ["layer", "direction", "kind"].forEach(function (id) { $(id).addEventListener("change", fromControls); });
    $("unit").addEventListener("change", fromControls);
    $("prev").addEventListener("click", function () { select(state.slot, state.unit - 1); });
    $("next").addEventListener("click", function () { select(state.slot, state.unit + 1); });
    document.addEventListener("keydown", function (e) {
      var tag = (e.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || !B) return;
      if (e.key === "ArrowLeft") select(state.slot, state.unit - 1);
      if (e.key === "ArrowRight") select(state.slot, state.unit + 1);
    });
    var box = $("text");
    box.addEventListener("mouseover", function (e) {
      var t = e.target;
      if (t.dataset && t.dataset.i !== undefined) showTooltip(+t.dataset.i, t);
    });
    box.addEventListener("mouseleave", function () { $("tooltip").hidden = true; });
    box.addEventListener("scroll", function () { $("tooltip").hidden = true; });
    box.addEventListener("mouseup", function () { setTimeout(onSelect, 0); });
    $("run").addEventListener("click", function () { retrace($("input").value); });
    $("file").addEventListener("change", function () {
      var f = this.files[0];
      if (!f) return;
      var reader = new FileReader();
      reader.onload = function () { $("input").value = reader.result; retrace(reader.result); };
      reader.onerror = function () { message("Could not read " + f.name); };
      reader.readAsText(f);
      this.value = "";
    });
    if (!config.live) {
      $("run").disabled = true;
      $("file").disabled = true;
      document.querySelector(".file-button").classList.add("disabled");
      $("input").readOnly = true;
      $("input-note").textContent = "This page is a saved file: it holds the trace of its own text. " +
        "To trace another, run `rnnkit explore RUN_DIR` and open the address it prints.";
    }
  }

  wire();
  if (config.live) {
    fetch("/api/trace").then(function (r) { return r.json(); }).then(load)
      .catch(function (err) { message("Could not load the trace: " + err); });
  } else {
    load(JSON.parse(document.getElementById("bundle").textContent));
  }
})();
