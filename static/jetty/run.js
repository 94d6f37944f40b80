// The run page: a window of the timeline that scrolls both ways without holding every event, a live tail
// (WebSocket notices, polling without them), and replay (play, pause, step, speed, jump, permalinks, j/k/space).
(function () {
  "use strict";
  const timeline = document.getElementById("timeline");
  if (!timeline) return;
  const scroller = document.getElementById("timeline-scroll");
  const run = timeline.dataset.run;
  const base = `/runs/${run}`;
  const MAX_ROWS = 400; // rows kept in the page; the rest are dropped and fetched again when scrolled to
  let lastSeq = Number(timeline.dataset.lastSeq || 0);
  let finished = timeline.dataset.final === "1";
  let current = null; // the replay cursor (a seq)
  let playing = null;
  let tailBusy = false, tailAgain = false;

  const rows = () => timeline.querySelectorAll("li.event");
  const row = (seq) => document.getElementById(`e-${seq}`);
  const shownLast = () => { const r = rows(); return r.length ? Number(r[r.length - 1].dataset.seq) : 0; };
  const shownFirst = () => { const r = rows(); return r.length ? Number(r[0].dataset.seq) : 0; };
  const position = document.getElementById("replay-position");
  const scrubber = document.getElementById("scrubber");

  function loader(side, seq) {
    const li = document.createElement("li");
    li.className = `loader ${side}`;
    li.dataset[side] = String(seq);
    li.setAttribute("hx-get", `${base}/events?${side}=${seq}`);
    li.setAttribute("hx-trigger", "intersect root:#timeline-scroll");
    li.setAttribute("hx-swap", "outerHTML");
    li.textContent = side === "before" ? "loading earlier events…" : "loading later events…";
    return li;
  }

  // Keep the page small: drop rows on the side away from where the reader is going.
  function prune(direction) {
    const all = rows();
    const extra = all.length - MAX_ROWS;
    if (extra <= 0) return;
    if (direction === "after") {
      const keep = all[extra];
      const before = keep.offsetTop;
      timeline.querySelectorAll("li.loader.before").forEach((l) => l.remove());
      for (let i = 0; i < extra; i++) all[i].remove();
      const l = loader("before", Number(keep.dataset.seq));
      timeline.insertBefore(l, keep);
      scroller.scrollTop -= before - keep.offsetTop;
      htmx.process(l);
    } else {
      timeline.querySelectorAll("li.loader.after").forEach((l) => l.remove());
      for (let i = all.length - extra; i < all.length; i++) all[i].remove();
      const l = loader("after", Number(all[all.length - extra - 1].dataset.seq));
      timeline.appendChild(l);
      htmx.process(l);
    }
  }

  document.body.addEventListener("htmx:beforeSwap", (e) => {
    const target = e.detail.target;
    if (target && target.classList && target.classList.contains("before") && target.classList.contains("loader")) {
      timeline.dataset.anchor = String(shownFirst()); // keep the reader's place when rows arrive above
    }
  });
  // A model call's detail has a slot for the "fork from here" form, which the runs side of the site renders.
  document.body.addEventListener("htmx:afterSettle", () => {
    timeline.querySelectorAll("div.fork-slot:not(.loading)").forEach((slot) => {
      slot.classList.add("loading");
      htmx.ajax("GET", slot.dataset.url, { target: slot, swap: "outerHTML" });
    });
  });
  document.body.addEventListener("htmx:afterSettle", (e) => {
    const anchor = timeline.dataset.anchor;
    if (anchor) {
      delete timeline.dataset.anchor;
      const a = row(anchor);
      if (a) scroller.scrollTop = a.offsetTop - scroller.offsetTop - 40;
      prune("before");
    } else if (e.detail.requestConfig && /\/events\?after=/.test(e.detail.requestConfig.path || "")) {
      prune("after");
    }
    updatePosition();
  });

  async function fetchRows(query) {
    const response = await fetch(`${base}/events?${query}`, { headers: { "HX-Request": "true" } });
    if (!response.ok) throw new Error(`events: ${response.status}`);
    lastSeq = Math.max(lastSeq, Number(response.headers.get("X-Jetty-Last-Seq") || 0));
    const status = response.headers.get("X-Jetty-Status");
    return { html: await response.text(), status };
  }

  function insert(html, where) {
    const holder = document.createElement("template");
    holder.innerHTML = html;
    const nodes = Array.from(holder.content.children);
    if (where === "replace") timeline.replaceChildren(...nodes);
    else timeline.append(...nodes);
    nodes.forEach((n) => htmx.process(n));
  }

  // The live tail: only when the reader has the end of the list loaded (no "later" loader waiting).
  async function tail() {
    if (tailBusy) { tailAgain = true; return; }
    if (timeline.querySelector("li.loader.after")) return;
    tailBusy = true;
    try {
      const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
      const { html, status } = await fetchRows(`after=${shownLast()}&limit=300`);
      if (html.trim()) {
        insert(html, "append");
        prune("after");
        if (atBottom && !playing) scroller.scrollTop = scroller.scrollHeight;
      }
      if (status && status !== document.getElementById("run-header")?.dataset.status) refreshHeader();
      updatePosition();
    } catch (err) {
      console.warn(err);
    } finally {
      tailBusy = false;
      if (tailAgain) { tailAgain = false; tail(); }
    }
  }

  function refreshHeader() {
    htmx.ajax("GET", `${base}/header`, { target: "#run-header", swap: "outerHTML" }).then(() => {
      const header = document.getElementById("run-header");
      if (header && header.dataset.final === "1") stopLive();
    });
  }

  let socket = null, pollTimer = null;
  const liveState = document.getElementById("live-state");
  function startPolling(ms) {
    clearInterval(pollTimer);
    pollTimer = setInterval(tail, ms);
  }
  function stopLive() {
    finished = true;
    clearInterval(pollTimer);
    if (socket) socket.close();
    tail();
    liveState.textContent = "";
  }
  function startLive() {
    if (finished) return;
    liveState.textContent = "live (polling)";
    startPolling(1000);
    if (timeline.dataset.push !== "1" || !("WebSocket" in window)) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    try {
      socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${run}/`);
    } catch (err) {
      return;
    }
    socket.onopen = () => { liveState.textContent = "live"; startPolling(5000); }; // a slow poll in case a notice is lost
    socket.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      lastSeq = Math.max(lastSeq, data.last_seq || 0);
      tail();
      if (data.final) refreshHeader();
    };
    socket.onclose = () => { if (!finished) { liveState.textContent = "live (polling)"; startPolling(1000); } };
  }

  // Replay.
  function updatePosition() {
    const total = Math.max(lastSeq, shownLast());
    position.textContent = current ? `event ${current} of ${total}` : `${total} events`;
    scrubber.max = String(Math.max(total, 1));
    const jump = document.getElementById("jump-seq");
    if (jump) jump.max = String(total);
  }

  function select(seq, scroll = true) {
    const previous = current && row(current);
    if (previous) previous.classList.remove("current");
    const li = row(seq);
    if (!li) return false;
    current = seq;
    li.classList.add("current");
    if (scroll) li.scrollIntoView({ block: "nearest" });
    history.replaceState(null, "", `${base}/?at=${seq}`);
    scrubber.value = String(seq);
    updatePosition();
    return true;
  }

  async function jump(seq) {
    seq = Math.max(1, Math.min(seq, Math.max(lastSeq, 1)));
    if (!row(seq)) {
      const { html } = await fetchRows(`at=${seq}`);
      insert(html, "replace");
    }
    const li = row(seq);
    if (li) {
      li.classList.add("target");
      select(seq, false);
      scroller.scrollTop = li.offsetTop - scroller.offsetTop - 40;
    }
  }

  async function step(delta) {
    if (current === null || !row(current)) {
      const first = delta > 0 ? rows()[0] : rows()[rows().length - 1];
      if (first) select(Number(first.dataset.seq));
      return true;
    }
    let li = row(current);
    let next = delta > 0 ? li.nextElementSibling : li.previousElementSibling;
    if (!next || !next.classList.contains("event")) {
      const more = delta > 0 ? timeline.querySelector("li.loader.after") : timeline.querySelector("li.loader.before");
      if (!more) return false; // the start, or the end so far
      const { html } = await fetchRows(delta > 0 ? `after=${shownLast()}` : `before=${shownFirst()}`);
      const holder = document.createElement("template");
      holder.innerHTML = html;
      const nodes = Array.from(holder.content.children);
      more.replaceWith(...nodes);
      nodes.forEach((n) => htmx.process(n));
      prune(delta > 0 ? "after" : "before");
      li = row(current);
      next = li && (delta > 0 ? li.nextElementSibling : li.previousElementSibling);
      if (!next || !next.classList.contains("event")) return false;
    }
    return select(Number(next.dataset.seq));
  }

  const playButton = document.getElementById("replay-play");
  function pause() {
    clearTimeout(playing);
    playing = null;
    playButton.textContent = "▶ Play";
  }
  function play() {
    const speed = Number(document.getElementById("replay-speed").value || 1);
    playButton.textContent = "⏸ Pause";
    const tick = async () => {
      const moved = await step(1);
      if (!moved && finished) return pause();
      playing = setTimeout(tick, 1000 / speed);
    };
    playing = setTimeout(tick, 0);
  }
  playButton.addEventListener("click", () => (playing ? pause() : play()));
  document.getElementById("replay-forward").addEventListener("click", () => { pause(); step(1); });
  document.getElementById("replay-back").addEventListener("click", () => { pause(); step(-1); });
  document.getElementById("replay-first").addEventListener("click", () => { pause(); jump(1); });
  document.getElementById("jump-seq").addEventListener("change", (e) => { pause(); jump(Number(e.target.value)); });
  scrubber.addEventListener("change", (e) => { pause(); jump(Number(e.target.value)); });
  timeline.addEventListener("click", (e) => {
    const link = e.target.closest("a.permalink");
    const li = e.target.closest("li.event");
    if (link) { e.preventDefault(); select(Number(link.closest("li.event").dataset.seq)); return; }
    if (li && !e.target.closest("details")) select(Number(li.dataset.seq), false);
  });
  document.getElementById("search-hits").addEventListener("click", (e) => {
    const hit = e.target.closest("a.hit");
    if (!hit) return;
    e.preventDefault();
    pause();
    jump(Number(hit.dataset.seq));
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || e.metaKey || e.ctrlKey || e.altKey) return;
    if (e.key === "j") { pause(); step(1); e.preventDefault(); }
    else if (e.key === "k") { pause(); step(-1); e.preventDefault(); }
    else if (e.key === " ") { playing ? pause() : play(); e.preventDefault(); }
  });

  const at = Number(timeline.dataset.at || 0);
  if (at) jump(at);
  updatePosition();
  startLive();
})();
