// bestshot review page: one set at a time, every key also a button. No dependencies.
"use strict";
(function () {
  const TOKEN = document.body.dataset.token;
  const BASE = "/r/" + TOKEN + "/";
  const TAGS = Array.from(document.getElementById("tag-list").content.querySelectorAll("span")).map((s) => s.textContent);
  const $ = (id) => document.getElementById(id);
  const S = { queue: [], pos: 0, set: null, winner: null, off: new Set(), drawn: [], crop: null, mode: "view", rejects: {} };

  function status(msg, error) {
    const el = $("status");
    el.textContent = msg;
    el.className = error ? "error" : "";
  }

  async function api(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Bestshot-Token": TOKEN },
      body: JSON.stringify(body),
    };
    const r = await fetch(BASE + path, opts);
    const data = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }

  // The same arithmetic as core/review/cropbox.py: k*a x k*b, whole pixels, inside the image.
  function gcd(a, b) { while (b) { [a, b] = [b, a % b]; } return a; }
  function ratio(W, H) { const g = gcd(W, H); return [W / g, H / g, g]; }
  function sizeFrom(W, H, x, y, wish) {
    const [a, b, g] = ratio(W, H);
    const kmax = Math.max(1, Math.min(g, Math.floor((W - x) / a), Math.floor((H - y) / b)));
    const k = Math.min(kmax, Math.max(1, Math.round(wish)));
    return [k * a, k * b];
  }
  function clampBox(W, H, bx) {
    const x = Math.min(Math.max(Math.round(bx.x), 0), W - bx.w);
    const y = Math.min(Math.max(Math.round(bx.y), 0), H - bx.h);
    return { x: x, y: y, w: bx.w, h: bx.h };
  }
  function intBox(W, H, b) {
    const x = Math.max(0, Math.min(W - 1, Math.round(b.x)));
    const y = Math.max(0, Math.min(H - 1, Math.round(b.y)));
    return { x: x, y: y, w: Math.max(1, Math.min(W - x, Math.round(b.w))), h: Math.max(1, Math.min(H - y, Math.round(b.h))) };
  }

  function member(i) { return S.set && S.set.members[i]; }
  function pct(v, total) { return (100 * v / total) + "%"; }
  function place(el, b, m) {
    el.style.left = pct(b.x, m.width); el.style.top = pct(b.y, m.height);
    el.style.width = pct(b.w, m.width); el.style.height = pct(b.h, m.height);
  }

  async function loadQueue(focus) {
    const q = await api("api/queue");
    S.queue = q.sets;
    if (focus) {
      const i = S.queue.findIndex((s) => s.set_id === focus);
      if (i >= 0) S.pos = i;
    }
    S.pos = Math.max(0, Math.min(S.pos, S.queue.length - 1));
    if (!S.queue.length) {
      S.set = null; S.mode = "view"; $("reject-panel").hidden = true; $("members").innerHTML = ""; $("pos").textContent = "queue empty";
      $("folder").textContent = ""; $("conf").textContent = ""; $("reasons").textContent = "";
      return;
    }
    await loadSet(S.queue[S.pos].set_id);
  }

  async function loadSet(id) {
    S.set = await api("api/set/" + encodeURIComponent(id));
    const p = S.set.proposal;
    S.winner = p && p.winner !== null ? p.winner : 0;
    S.off = new Set(); S.drawn = []; S.mode = "view"; S.rejects = {};
    S.crop = null;
    $("reject-panel").hidden = true;
    render();
  }

  function proposedCrop(m) {
    return m && m.crop && m.crop.best ? { x: m.crop.best.x, y: m.crop.best.y, w: m.crop.best.w, h: m.crop.best.h } : null;
  }

  function render() {
    const set = S.set;
    $("pos").textContent = "Set " + (S.pos + 1) + "/" + S.queue.length;
    $("folder").textContent = set.folder;
    const p = set.proposal;
    $("conf").textContent = p ? "P(winner) " + (p.confidence || 0).toFixed(2) + (p.uncertain ? " · CHECK" : "") : "no proposal";
    $("reasons").textContent = p ? [...(p.uncertain_reasons || []), ...(p.reasons || [])].join(" · ") : "";
    const root = $("members");
    root.innerHTML = "";
    set.members.forEach((m) => root.appendChild(card(m)));
    document.body.classList.toggle("drawing", S.mode === "draw");
    for (const [id, key] of [["btn-edit", "edit"], ["btn-draw", "draw"], ["btn-reject", "reject"]]) {
      $(id).classList.toggle("on", S.mode === key);
    }
  }

  function card(m) {
    const c = document.createElement("div");
    c.className = "card" + (m.index === S.winner ? " selected" : "") + (m.present ? "" : " gone");
    c.dataset.index = m.index;
    const h = document.createElement("h3");
    const prop = S.set.proposal && S.set.proposal.winner === m.index;
    const pw = m.p_winner === null || m.p_winner === undefined ? "" : " · P " + m.p_winner.toFixed(2);
    h.innerHTML = "<span></span><span></span>";
    h.firstChild.textContent = (m.index + 1) + " · " + m.name + pw;
    h.lastChild.textContent = !m.present ? "moved or deleted meanwhile" : prop ? "★ proposed" : m.location;
    if (prop) h.lastChild.className = "proposed";
    c.appendChild(h);
    const stage = document.createElement("div");
    stage.className = "stage";
    if (m.present) {
      const img = document.createElement("img");
      img.src = BASE + "img/" + encodeURIComponent(S.set.set_id) + "/" + m.index + "/preview";
      img.alt = m.name; img.draggable = false;
      img.width = m.width; img.height = m.height;
      stage.appendChild(img);
    }
    const ov = document.createElement("div");
    ov.className = "ov";
    stage.appendChild(ov);
    m.regions.forEach((r, i) => ov.appendChild(regionBox(m, r, i)));
    S.drawn.filter((d) => d.image === m.name).forEach((d) => ov.appendChild(drawnBox(m, d)));
    if (m.index === S.winner) {
      (m.crop ? m.crop.fallbacks : []).forEach((f) => {
        const fb = document.createElement("div"); fb.className = "fallback"; place(fb, f, m); ov.appendChild(fb);
      });
      const box = S.crop || (S.mode === "edit" ? null : proposedCrop(m));
      if (box) ov.appendChild(cropBox(m, box));
    }
    ov.addEventListener("mousedown", (e) => startDraw(e, m, ov));
    stage.addEventListener("click", () => { if (S.mode === "view") { S.winner = m.index; render(); } });
    c.appendChild(stage);
    return c;
  }

  function regionBox(m, r, i) {
    const key = m.index + ":" + i;
    const el = document.createElement("div");
    el.className = "region " + r.kind + (S.off.has(key) ? " off" : "");
    place(el, r.box, m);
    const lab = document.createElement("span");
    lab.className = "lab";
    lab.textContent = r.tag + (S.off.has(key) ? " (not an anomaly)" : "");
    const b = document.createElement("button");
    b.className = "not-anomaly";
    b.textContent = S.off.has(key) ? "undo" : "not an anomaly";
    b.addEventListener("click", (e) => { e.stopPropagation(); S.off.has(key) ? S.off.delete(key) : S.off.add(key); render(); });
    b.addEventListener("mousedown", (e) => e.stopPropagation());
    lab.appendChild(b);
    el.appendChild(lab);
    return el;
  }

  function drawnBox(m, d) {
    const el = document.createElement("div");
    el.className = "drawn";
    place(el, d.box, m);
    const lab = document.createElement("span");
    lab.className = "lab";
    lab.textContent = d.tag + " (missed)";
    const b = document.createElement("button");
    b.textContent = "✕";
    b.title = "remove this box";
    b.addEventListener("mousedown", (e) => e.stopPropagation());
    b.addEventListener("click", (e) => { e.stopPropagation(); S.drawn = S.drawn.filter((x) => x !== d); render(); });
    lab.appendChild(b);
    el.appendChild(lab);
    return el;
  }

  function cropBox(m, box) {
    const el = document.createElement("div");
    el.className = "crop" + (S.mode === "edit" ? " editing" : "");
    el.id = "crop-box";
    el.dataset.box = [box.x, box.y, box.w, box.h].join(",");
    place(el, box, m);
    if (S.mode === "edit") {
      const hd = document.createElement("div");
      hd.className = "handle"; hd.id = "crop-handle";
      el.appendChild(hd);
      el.addEventListener("mousedown", (e) => startEdit(e, m, el, e.target === hd));
    }
    return el;
  }

  function toImage(e, m, ov) {
    const r = ov.getBoundingClientRect();
    return { x: (e.clientX - r.left) * m.width / r.width, y: (e.clientY - r.top) * m.height / r.height };
  }

  function startEdit(e, m, el, resize) {
    e.preventDefault(); e.stopPropagation();
    const ov = el.parentElement;
    const start = toImage(e, m, ov);
    const b0 = { ...S.crop };
    const [a, b] = ratio(m.width, m.height);
    const move = (ev) => {
      const p = toImage(ev, m, ov);
      let nb;
      if (resize) {
        const wish = ((p.x - b0.x) / a + (p.y - b0.y) / b) / 2;
        const [w, h] = sizeFrom(m.width, m.height, b0.x, b0.y, wish);
        nb = { x: b0.x, y: b0.y, w: w, h: h };
      } else {
        nb = clampBox(m.width, m.height, { x: b0.x + p.x - start.x, y: b0.y + p.y - start.y, w: b0.w, h: b0.h });
      }
      S.crop = nb;
      place(el, nb, m);
      el.dataset.box = [nb.x, nb.y, nb.w, nb.h].join(",");
    };
    const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); status("crop " + S.crop.w + "×" + S.crop.h + " at " + S.crop.x + "," + S.crop.y + " — C or Enter saves it"); };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  function startDraw(e, m, ov) {
    if (S.mode !== "draw" || !m.present) return;
    e.preventDefault();
    const a = toImage(e, m, ov);
    const el = document.createElement("div");
    el.className = "drawn";
    ov.appendChild(el);
    let last = a;
    const move = (ev) => {
      last = toImage(ev, m, ov);
      place(el, { x: Math.min(a.x, last.x), y: Math.min(a.y, last.y), w: Math.abs(last.x - a.x), h: Math.abs(last.y - a.y) }, m);
    };
    const up = () => {
      window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
      const b = intBox(m.width, m.height, { x: Math.min(a.x, last.x), y: Math.min(a.y, last.y), w: Math.abs(last.x - a.x), h: Math.abs(last.y - a.y) });
      if (b.w >= 4 && b.h >= 4) {
        S.drawn.push({ image: m.name, box: b, tag: $("draw-tag").value, label: "anomaly", origin: "drawn" });
        status("missed " + $("draw-tag").value + " marked on " + m.name + "; it is saved with this set's decision");
      }
      S.mode = "view";
      render();
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  function regionLabels() {
    const out = [];
    S.off.forEach((key) => {
      const [mi, ri] = key.split(":").map(Number);
      const m = member(mi), r = m.regions[ri];
      out.push({ image: m.name, box: intBox(m.width, m.height, r.box), tag: r.tag, label: "not_anomaly", origin: "flagged" });
    });
    return out.concat(S.drawn);
  }

  async function act(body) {
    const id = S.set.set_id;
    body.region_labels = regionLabels();
    try {
      const r = await api("api/set/" + encodeURIComponent(id) + "/act", body);
      status(body.action + " " + S.set.folder + ": " + r.moved.map((x) => x.name + " → " + x.to).join(", ") + (r.crop_file ? "; crop " + r.crop_file : "") + " (U undoes)");
      await loadQueue();
    } catch (err) {
      status(err.message, true);
    }
  }

  async function undo() {
    try {
      const r = await api("api/undo", {});
      status("undone: " + r.restored.join(", ") + (r.problems.length ? " — " + r.problems.join("; ") : ""));
      await loadQueue(r.set_id);
    } catch (err) {
      status(err.message, true);
    }
  }

  function openReject() {
    S.mode = "reject";
    const rows = $("reject-rows");
    rows.innerHTML = "";
    S.set.members.forEach((m) => {
      const row = document.createElement("div");
      row.className = "rrow";
      const lab = document.createElement("label");
      const cb = document.createElement("input");
      cb.type = "checkbox"; cb.className = "reject-member"; cb.dataset.index = m.index; cb.disabled = !m.present;
      cb.addEventListener("change", () => { if (cb.checked) S.rejects[m.index] = S.rejects[m.index] || []; else delete S.rejects[m.index]; });
      lab.appendChild(cb);
      lab.appendChild(document.createTextNode(" " + (m.index + 1) + " · " + m.name));
      row.appendChild(lab);
      const tags = document.createElement("div");
      tags.className = "tags";
      TAGS.forEach((t) => {
        const b = document.createElement("button");
        b.textContent = t; b.dataset.tag = t; b.dataset.index = m.index;
        b.addEventListener("click", () => {
          const cur = S.rejects[m.index] || [];
          S.rejects[m.index] = cur.includes(t) ? cur.filter((x) => x !== t) : cur.concat([t]);
          cb.checked = true;
          b.classList.toggle("on", S.rejects[m.index].includes(t));
        });
        tags.appendChild(b);
      });
      row.appendChild(tags);
      rows.appendChild(row);
    });
    $("reject-panel").hidden = false;
    render();
  }

  function zoom() {
    const m = member(S.winner);
    if (!m || !m.present) return;
    const z = $("zoom");
    $("zoom-img").src = BASE + "img/" + encodeURIComponent(S.set.set_id) + "/" + m.index + "/full";
    z.hidden = false;
    const focus = m.regions[0] ? m.regions[0].box : { x: m.width / 2, y: m.height / 2, w: 0, h: 0 };
    $("zoom-img").onload = () => { z.scrollLeft = focus.x + focus.w / 2 - z.clientWidth / 2; z.scrollTop = focus.y + focus.h / 2 - z.clientHeight / 2; };
  }

  function key(k) {
    if (!$("zoom").hidden) { $("zoom").hidden = true; return; }
    if (k === "u" || k === "U") { undo(); return; }
    if (!S.set) return;
    if (S.mode === "reject") {
      if (k === "Enter") {
        const reject = {};
        Object.keys(S.rejects).forEach((i) => { reject[i] = S.rejects[i]; });
        if (!Object.keys(reject).length) { status("tick a member to reject", true); return; }
        $("reject-panel").hidden = true;
        act({ action: "reject", reject: reject });
      } else if (k === "Escape" || k === "x" || k === "X") {
        S.mode = "view"; $("reject-panel").hidden = true; render();
      }
      return;
    }
    switch (k) {
      case "1": case "2": case "3": case "4": {
        const i = Number(k) - 1;
        if (member(i)) { S.winner = i; S.crop = null; if (S.mode === "edit") startEditMode(); render(); }
        break;
      }
      case "a": case "A": act({ action: "approve", winner: S.winner }); break;
      case "c": case "C": case "Enter": {
        if (k === "Enter" && S.mode !== "edit") break;
        const m = member(S.winner);
        const box = S.crop || proposedCrop(m);
        if (!box) { status(m.name + " has no proposed crop: press E to draw one", true); break; }
        act({ action: "crop", winner: S.winner, crop_box: box });
        break;
      }
      case "e": case "E": S.mode === "edit" ? (S.mode = "view", S.crop = null) : startEditMode(); render(); break;
      case "x": case "X": openReject(); break;
      case "m": case "M": S.mode = S.mode === "draw" ? "view" : "draw"; render(); break;
      case "z": case "Z": zoom(); break;
      case "u": case "U": undo(); break;
      case "ArrowRight": if (S.pos < S.queue.length - 1) { S.pos++; loadSet(S.queue[S.pos].set_id); } break;
      case "ArrowLeft": if (S.pos > 0) { S.pos--; loadSet(S.queue[S.pos].set_id); } break;
      case "Escape": S.mode = "view"; S.crop = null; render(); break;
      default: break;
    }
  }

  function startEditMode() {
    const m = member(S.winner);
    S.mode = "edit";
    const p = proposedCrop(m);
    if (p) { S.crop = p; return; }
    // No proposal: start from the largest exact box, centred, at 80 % of the largest size.
    const [a, b, g] = ratio(m.width, m.height);
    const k = Math.max(1, Math.round(g * 0.8));
    S.crop = clampBox(m.width, m.height, { x: (m.width - k * a) / 2, y: (m.height - k * b) / 2, w: k * a, h: k * b });
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    if (["ArrowLeft", "ArrowRight", "Enter", "Escape"].includes(e.key) || e.key.length === 1) e.preventDefault();
    key(e.key);
  });
  document.querySelectorAll("[data-key]").forEach((b) => b.addEventListener("click", (e) => { e.preventDefault(); b.blur(); key(b.dataset.key); }));
  $("zoom").addEventListener("click", () => { $("zoom").hidden = true; });
  loadQueue().then(() => status("ready: 1–4 pick, A approve, C crop, E edit crop, X reject, M mark missed, U undo, ←/→ move")).catch((err) => status(err.message, true));
})();
