// The quorate verifier page: reads the files you give it, verifies them with the WebAssembly
// build of quorate-verify (web/wasm), and shows the same report as `quorate verify`.
// Nothing is sent anywhere: the module is embedded in verifier-wasm.js as base64 and the page
// makes no request of its own (its Content-Security-Policy forbids them too).
"use strict";

(function () {
  const EXTENSIONS = ["cose", "qlog", "qchain", "bundle"];
  let wasm = null;

  function decodeBase64(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function module() {
    if (wasm) return wasm;
    if (typeof QUORATE_VERIFY_WASM !== "string") {
      throw new Error("verifier-wasm.js is missing: build the page with scripts/build-web");
    }
    const { instance } = await WebAssembly.instantiate(decodeBase64(QUORATE_VERIFY_WASM), {});
    wasm = instance.exports;
    return wasm;
  }

  // Packs a request (see web/wasm/src/lib.rs): u32 LE header length, JSON header, the bytes.
  function pack(input) {
    const blobs = [];
    const entry = (f) => {
      blobs.push(f.bytes);
      return { name: f.name, len: f.bytes.length };
    };
    const header = {
      now: input.now ?? Math.floor(Date.now() / 1000),
      roster: input.roster ? entry(input.roster) : null,
      admin: input.admin ? entry(input.admin) : null,
      trust: (input.trust || []).map(entry),
      files: (input.files || []).map(entry),
    };
    const head = new TextEncoder().encode(JSON.stringify(header));
    let total = 4 + head.length;
    for (const b of blobs) total += b.length;
    const out = new Uint8Array(total);
    new DataView(out.buffer).setUint32(0, head.length, true);
    out.set(head, 4);
    let at = 4 + head.length;
    for (const b of blobs) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  // Verifies {roster, admin, trust: [], files: []}, each file {name, bytes: Uint8Array}.
  // Returns {ok, report, lines, notes} or {ok: false, error}.
  async function verify(input) {
    const m = await module();
    const request = pack(input);
    const ptr = m.qv_input(request.length);
    if (ptr === 0) return { ok: false, error: "the files are too large to verify here" };
    new Uint8Array(m.memory.buffer, ptr, request.length).set(request);
    let len;
    try {
      len = m.qv_verify();
    } catch (e) {
      // The module aborted; its panic message, if any, is the response. Start afresh next time.
      wasm = null;
      len = m.qv_output_len();
      if (len === 0) throw e;
    }
    const out = new Uint8Array(m.memory.buffer, m.qv_output(), len);
    return JSON.parse(new TextDecoder().decode(out));
  }

  // ---- the page ----

  const state = { roster: null, admin: null, trust: [], files: [] };

  async function readFile(file, name) {
    return { name: name || file.webkitRelativePath || file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
  }

  function wanted(path) {
    // Files found inside a folder are taken as `quorate verify DIR` takes them; files given
    // one by one are taken whatever their name.
    if (!path.includes("/")) return true;
    const base = path.split("/").pop();
    if (base === "transcript.cbor") return true;
    const ext = base.includes(".") ? base.split(".").pop() : "";
    return EXTENSIONS.includes(ext);
  }

  async function addFiles(list) {
    const added = [];
    for (const f of list) {
      const rf = await readFile(f);
      if (!wanted(rf.name)) continue;
      state.files = state.files.filter((x) => x.name !== rf.name);
      added.push(rf);
    }
    added.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    state.files.push(...added);
    refresh();
  }

  // Walks dropped folders (drag and drop gives entries, not files).
  function entryFiles(entry, prefix) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => resolve([{ file: f, path: prefix + f.name }]), () => resolve([]));
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const next = () =>
          reader.readEntries(async (entries) => {
            if (entries.length === 0) {
              const nested = await Promise.all(all.map((e) => entryFiles(e, prefix + entry.name + "/")));
              resolve(nested.flat());
            } else {
              all.push(...entries);
              next();
            }
          }, () => resolve([]));
        next();
      } else {
        resolve([]);
      }
    });
  }

  async function onDrop(ev) {
    ev.preventDefault();
    document.getElementById("drop").classList.remove("over");
    const entries = [...ev.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    const found = (await Promise.all(entries.map((e) => entryFiles(e, "")))).flat();
    const files = [];
    for (const { file, path } of found) {
      const rf = await readFile(file, path);
      if (wanted(rf.name)) files.push(rf);
    }
    files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const f of files) state.files = state.files.filter((x) => x.name !== f.name);
    state.files.push(...files);
    refresh();
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  function refresh() {
    const summary = [];
    summary.push(state.roster ? `roster ${state.roster.name}` : "no roster");
    summary.push(state.admin ? `authority key ${state.admin.name}` : "no authority key");
    summary.push(`${state.trust.length} trusted node keys`);
    summary.push(`${state.files.length} files`);
    document.getElementById("loaded").textContent = summary.join(" · ");
    document.getElementById("verify").disabled = state.files.length === 0;
  }

  function row(ok, path, detail) {
    return el("tr", { class: ok ? "ok" : "fail", "data-path": path },
      el("td", { class: "verdict" }, ok ? "OK" : "FAIL"),
      el("td", { class: "path" }, path),
      el("td", { class: "detail" }, detail));
  }

  function render(result) {
    const out = document.getElementById("result");
    out.replaceChildren();
    out.dataset.state = result.error ? "error" : result.ok ? "ok" : "fail";
    if (result.error) {
      out.append(el("p", { class: "error", id: "error" }, "Error: " + result.error));
      return;
    }
    const r = result.report;
    out.append(el("p", { id: "verdict", class: result.ok ? "ok" : "fail" },
      result.ok ? "Everything verified." : "Some files did NOT verify."));
    for (const n of result.notes || []) out.append(el("p", { class: "note" }, n));
    const table = el("table", { id: "files" },
      el("tr", {}, el("th", {}, ""), el("th", {}, "file"), el("th", {}, "what was checked")));
    for (const c of r.chains || []) {
      const stages = (c.stages || []).map((s, i) => `${i + 1}:${s.join("+")}`).join(" → ");
      table.append(row(c.ok, c.path, c.ok ? `receipt chain of job ${c.job_id}, ${c.stages.length} stages linked [${stages}]`
        : `chain broken: ${c.reason}`));
    }
    for (const f of r.receipts || []) {
      table.append(row(f.ok, f.path, f.ok
        ? `${f.kind} job ${f.job_id} signed by ${f.signer} [${f.kid}]${f.form === "batch" ? " (batch)" : ""}, model sha256:${f.model_digest.slice(0, 16)}…, outputs [${f.outputs.map((o) => o.name).join(", ")}], ${f.runtime} on ${f.provider}, issued ${new Date(f.issued_at * 1000).toISOString()}`
        : `${f.error}: ${f.reason}`));
    }
    for (const a of r.aggregates || []) table.append(row(a.ok, a.path, a.detail));
    for (const b of r.bundles || []) {
      const detail = b.error ? `invalid bundle, convicts nobody: ${b.error}`
        : `evidence bundle for job ${b.job_id}, ${b.signers.length} signed replicas under policy ${b.policy} (quorum ${b.quorum}); ` +
          (b.convicted.length ? `PROVEN WRONG: ${b.convicted.map((c) => c.signer).join(", ")}` : "proves no node wrong") +
          (b.unproven && b.unproven.length ? `; accusation NOT proven against: ${b.unproven.map((c) => c.signer).join(", ")}` : "");
      table.append(row(b.ok, b.path, detail));
    }
    out.append(table);
    out.append(el("details", {}, el("summary", {}, "as `quorate verify` prints it"),
      el("pre", { id: "lines" }, result.lines.join("\n"))));
    out.append(el("details", {}, el("summary", {}, "as `quorate verify --json` prints it"),
      el("pre", { id: "json" }, JSON.stringify(r, null, 2))));
  }

  async function run() {
    const input = { roster: state.roster, admin: state.admin, trust: state.trust, files: state.files };
    try {
      render(await verify(input));
    } catch (e) {
      render({ ok: false, error: String(e && e.message ? e.message : e) });
    }
  }

  function setup() {
    const on = (id, ev, f) => document.getElementById(id).addEventListener(ev, f);
    on("roster", "change", async (e) => { state.roster = e.target.files[0] ? await readFile(e.target.files[0]) : null; refresh(); });
    on("admin", "change", async (e) => { state.admin = e.target.files[0] ? await readFile(e.target.files[0]) : null; refresh(); });
    on("trust", "change", async (e) => { state.trust = await Promise.all([...e.target.files].map((f) => readFile(f))); refresh(); });
    on("pick-files", "change", (e) => addFiles([...e.target.files]));
    on("pick-folder", "change", (e) => addFiles([...e.target.files]));
    on("clear", "click", () => { state.files = []; document.getElementById("result").replaceChildren(); refresh(); });
    on("verify", "click", run);
    const drop = document.getElementById("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", onDrop);
    refresh();
    module().then(() => { document.body.dataset.ready = "1"; },
      (e) => render({ ok: false, error: String(e.message || e) }));
  }

  window.quorate = { verify, state, run };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
