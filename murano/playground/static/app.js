// murano playground: plain JavaScript, no build step, nothing loaded from elsewhere.
// It talks only to this server's API, the way any client would.
"use strict";

const API = "/api/v1";
const KEY_STORE = "murano.apiKey";
const HISTORY_STORE = "murano.history";
const HISTORY_LIMIT = 24;

const $ = (id) => document.getElementById(id);
const state = { authRequired: true, models: new Map(), snippet: "curl", following: null };

// ---------------------------------------------------------------- API calls

function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

function authHeaders() {
  const key = apiKey();
  return state.authRequired && key ? { Authorization: `Bearer ${key}` } : {};
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function apiError(response) {
  let message = "";
  try {
    const body = await response.json();
    message = body.error || body.message || body.detail || "";
  } catch (_) {
    // not JSON: fall back to the status line
  }
  return new ApiError(response.status, message || `${response.status} ${response.statusText}`);
}

async function getJson(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await apiError(response);
  return response.json();
}

// ---------------------------------------------------------------- models and sizing

function defaultModel(models) {
  const marked = models.find((m) => (m.model_spec.traits || []).includes("default"));
  return (marked || models[0] || {}).id;
}

function fillSelect(select, values, selected) {
  select.replaceChildren(
    ...values.map((value) => {
      const option = new Option(value, value);
      option.selected = value === selected;
      return option;
    }),
  );
}

function applyModel() {
  const entry = state.models.get($("model").value);
  if (!entry) return;
  const c = entry.model_spec.constraints || {};
  const ratios = c.aspectRatios && c.aspectRatios.length ? c.aspectRatios : null;
  $("size-fields").hidden = $("height-field").hidden = Boolean(ratios);
  $("aspect-field").hidden = !ratios;
  $("resolution-field").hidden = !(ratios && c.resolutions && c.resolutions.length);
  if (ratios) {
    fillSelect($("aspect-ratio"), ratios, c.defaultAspectRatio || ratios[0]);
    if (c.resolutions) fillSelect($("resolution"), c.resolutions, c.defaultResolution || c.resolutions[0]);
  }
  const divisor = c.widthHeightDivisor || 8;
  for (const input of [$("width"), $("height")]) {
    input.step = String(divisor);
    input.min = String(divisor);
  }
  const steps = c.steps || { default: 8, max: 50 };
  $("steps").max = String(steps.max);
  $("steps").value = String(steps.default);
  $("steps").title = `1 to ${steps.max} (default ${steps.default})`;
  $("prompt").title = `up to ${c.promptCharacterLimit || 1500} characters`;
  updateSnippet();
}

// ---------------------------------------------------------------- the request

// A number when the field holds one; otherwise the text as typed, so that the server,
// not the page, says what is wrong with it (nothing is corrected silently).
function numberField(input) {
  const text = input.value.trim();
  return text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
}

function requestBody() {
  const body = { model: $("model").value, prompt: $("prompt").value };
  const negative = $("negative-prompt").value;
  if (negative) body.negative_prompt = negative;
  if ($("style").value) body.style_preset = $("style").value;
  if (!$("aspect-field").hidden) {
    body.aspect_ratio = $("aspect-ratio").value;
    if (!$("resolution-field").hidden) body.resolution = $("resolution").value;
  } else {
    body.width = numberField($("width"));
    body.height = numberField($("height"));
  }
  body.steps = numberField($("steps"));
  if ($("cfg").value.trim() !== "") body.cfg_scale = numberField($("cfg"));
  if (!$("random-seed").checked) body.seed = numberField($("seed"));
  body.variants = numberField($("variants"));
  body.format = $("format").value;
  body.safe_mode = $("safe-mode").checked;
  return body;
}

function loadRequest(body) {
  $("model").value = body.model;
  applyModel();
  $("prompt").value = body.prompt || "";
  $("negative-prompt").value = body.negative_prompt || "";
  $("style").value = body.style_preset || "";
  if (body.aspect_ratio) $("aspect-ratio").value = body.aspect_ratio;
  if (body.resolution) $("resolution").value = body.resolution;
  if (body.width) $("width").value = body.width;
  if (body.height) $("height").value = body.height;
  if (body.steps) $("steps").value = body.steps;
  $("cfg").value = body.cfg_scale ?? "";
  $("random-seed").checked = !body.seed;
  $("seed").disabled = !body.seed;
  $("seed").value = body.seed || "";
  $("variants").value = body.variants || 1;
  $("format").value = body.format || "webp";
  $("safe-mode").checked = body.safe_mode !== false;
  updateSnippet();
}

// ---------------------------------------------------------------- generating

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

function setBusy(busy, text = "") {
  $("generate").disabled = busy;
  $("progress").hidden = !busy;
  $("progress").removeAttribute("value"); // indeterminate until a progress event says more
  $("progress-text").textContent = text;
  $("results").setAttribute("aria-busy", String(busy));
  if (!busy) $("preview").hidden = true;
}

function showProgress(step, steps, preview) {
  $("progress").max = steps;
  $("progress").value = step;
  $("progress-text").textContent = `Step ${step} of ${steps}`;
  if (preview) {
    $("preview").src = `data:image/webp;base64,${preview}`;
    $("preview").hidden = false;
  }
}

// Server-sent events over fetch (EventSource cannot send an Authorization header).
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// The asynchronous path (the server answered 202): follow the job's event stream.
async function followJob(job) {
  $("progress-text").textContent = `Queued (position ${job.queuePosition ?? "?"})`;
  state.following = job;
  try {
    return await readJobEvents(job);
  } finally {
    state.following = null;
  }
}

// A job outlives the page that asked for it: leaving mid-job cancels it (nothing charged).
function cancelFollowedJob() {
  const job = state.following;
  if (!job) return;
  state.following = null;
  fetch(job.links.self, { method: "DELETE", headers: authHeaders(), keepalive: true }).catch(() => {});
}

async function readJobEvents(job) {
  const response = await fetch(job.links.events, {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
  });
  if (!response.ok) throw await apiError(response);
  for await (const { event, data } of serverEvents(response)) {
    if (event === "queued") {
      $("progress-text").textContent = `Queued (position ${data.queuePosition ?? "?"})`;
    } else if (event === "started") {
      $("progress-text").textContent = "Started";
    } else if (event === "progress") {
      showProgress(data.step, data.steps, data.preview);
    } else if (event === "completed") {
      return data.result;
    } else if (event === "failed" || event === "cancelled") {
      throw new ApiError(data.status || 500, data.error || data.message || `Generation ${event}`);
    }
  }
  throw new ApiError(0, "The server closed the event stream before the images were ready");
}

async function generate(event) {
  event.preventDefault();
  clearError();
  if (state.authRequired && !apiKey()) {
    showError("This server needs an API key: enter it above and save it.");
    $("key-section").hidden = false;
    $("api-key").focus();
    return;
  }
  const body = requestBody();
  setBusy(true, "Generating…");
  try {
    const response = await fetch(`${API}/image/generate`, {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json", Prefer: "respond-async" },
      body: JSON.stringify(body),
    });
    let result;
    if (response.status === 202) result = await followJob(await response.json());
    else if (response.ok) result = await response.json();
    else throw await apiError(response);
    showResult(body, result);
  } catch (error) {
    const hint = error.status === 401 ? " Check the API key above." : "";
    showError(`${error.message}${hint}`);
    if (error.status === 401) $("key-section").hidden = false;
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------- results and history

const MIME = { webp: "image/webp", png: "image/png", jpeg: "image/jpeg" };

function imageUrl(b64, mime) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return URL.createObjectURL(new Blob([bytes], { type: mime }));
}

function timingText(timing) {
  if (!timing) return "";
  const ms = (v) => `${Math.round(v)} ms`;
  const parts = [`total ${ms(timing.total)}`];
  if (timing.inferenceDuration != null) parts.push(`inference ${ms(timing.inferenceDuration)}`);
  if (timing.inferenceQueueTime != null) parts.push(`queue ${ms(timing.inferenceQueueTime)}`);
  return parts.join(", ");
}

function short(text, length = 80) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function showResult(body, result) {
  const data = (result.request && result.request.data) || body;
  const format = data.format || body.format || "webp";
  const seed = data.seed;
  const count = result.images.length;
  const figures = result.images.map((b64, i) => {
    const url = imageUrl(b64, MIME[format] || "application/octet-stream");
    const figure = document.createElement("figure");
    const img = new Image();
    img.src = url;
    img.alt = `Generated image ${i + 1} of ${count}: ${short(body.prompt)}`;
    const caption = document.createElement("figcaption");
    const variantSeed = seed == null ? "" : `seed ${seed + i}`;
    caption.textContent = [variantSeed, `${data.width ?? "?"}×${data.height ?? "?"}`, timingText(result.timing)]
      .filter(Boolean)
      .join(" · ");
    const download = document.createElement("a");
    download.href = url;
    download.download = `murano-${seed ?? "image"}-${i + 1}.${format === "jpeg" ? "jpg" : format}`;
    download.textContent = "Download";
    caption.append(" ", download);
    figure.append(img, caption);
    return figure;
  });
  $("results").replaceChildren(...figures);
  remember({ ...body, seed: seed ?? body.seed }, result, figures[0].querySelector("img"));
}

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_STORE) || "[]");
  } catch (_) {
    return [];
  }
}

function saveHistory(entries) {
  // Thumbnails are small, but local storage is too: drop the oldest until it fits.
  while (entries.length) {
    try {
      localStorage.setItem(HISTORY_STORE, JSON.stringify(entries));
      return;
    } catch (_) {
      entries.pop();
    }
  }
  localStorage.removeItem(HISTORY_STORE);
}

function thumbnail(img) {
  const size = 96;
  const canvas = document.createElement("canvas");
  const scale = size / Math.max(img.naturalWidth || size, img.naturalHeight || size);
  canvas.width = Math.max(1, Math.round((img.naturalWidth || size) * scale));
  canvas.height = Math.max(1, Math.round((img.naturalHeight || size) * scale));
  canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/webp", 0.7);
}

function remember(body, result, img) {
  const store = () => {
    const entry = {
      when: new Date().toISOString(),
      body,
      images: result.images.length,
      timing: result.timing || null,
      thumb: img.naturalWidth ? thumbnail(img) : "",
    };
    saveHistory([entry, ...loadHistory()].slice(0, HISTORY_LIMIT));
    renderHistory();
  };
  if (img.complete) store();
  else img.addEventListener("load", store, { once: true });
}

function renderHistory() {
  const items = loadHistory().map((entry) => {
    const li = document.createElement("li");
    if (entry.thumb) {
      const img = new Image();
      img.src = entry.thumb;
      img.alt = `Earlier result: ${short(entry.body.prompt, 60)}`;
      li.append(img);
    }
    const text = document.createElement("span");
    const when = new Date(entry.when).toLocaleString();
    text.textContent = `${short(entry.body.prompt, 60)} — ${entry.body.model}, seed ${entry.body.seed ?? "random"}, ${when}`;
    const reuse = document.createElement("button");
    reuse.type = "button";
    reuse.textContent = "Use these settings";
    reuse.addEventListener("click", () => loadRequest(entry.body));
    li.append(text, reuse);
    return li;
  });
  $("history").replaceChildren(...items);
}

// ---------------------------------------------------------------- code snippets

function pyValue(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value == null) return "None";
  return JSON.stringify(value);
}

function pyDict(body, indent) {
  const pad = " ".repeat(indent + 4);
  const lines = Object.entries(body).map(([k, v]) => `${pad}${JSON.stringify(k)}: ${pyValue(v)},`);
  return `{\n${lines.join("\n")}\n${" ".repeat(indent)}}`;
}

const OPENAI_SIZES = ["256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024", "1024x1792"];

function snippetFor(kind, body) {
  const base = `${location.origin}${API}`;
  const auth = state.authRequired;
  if (kind === "curl") {
    const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
    return [
      `curl -s ${base}/image/generate \\`,
      ...(auth ? [`  -H "Authorization: Bearer $MURANO_API_KEY" \\`] : []),
      `  -H "Content-Type: application/json" \\`,
      `  -d '${json}'`,
    ].join("\n");
  }
  const key = auth ? `os.environ["MURANO_API_KEY"]` : `"unused"`;
  const ext = body.format === "jpeg" ? "jpg" : body.format;
  if (kind === "openai") {
    const size = `${body.width}x${body.height}`;
    const args = [`    model=${pyValue(body.model)},`, `    prompt=${pyValue(body.prompt)},`];
    if (OPENAI_SIZES.includes(size)) args.push(`    size=${pyValue(size)},`);
    args.push(`    output_format=${pyValue(body.format)},`);
    if (!body.safe_mode) args.push(`    moderation="low",`);
    return [
      "import base64",
      "import os",
      "",
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url=${pyValue(base)}, api_key=${key})`,
      "# OpenAI's endpoint takes OpenAI's fields only (one image, OpenAI's sizes);",
      "# the other settings need /image/generate: see the httpx snippet.",
      "result = client.images.generate(",
      ...args,
      ")",
      `open("image.${ext}", "wb").write(base64.b64decode(result.data[0].b64_json))`,
    ].join("\n");
  }
  return [
    "import base64",
    "import os",
    "",
    "import httpx",
    "",
    "response = httpx.post(",
    `    ${pyValue(`${base}/image/generate`)},`,
    ...(auth ? [`    headers={"Authorization": f"Bearer {os.environ['MURANO_API_KEY']}"},`] : []),
    `    json=${pyDict(body, 4)},`,
    "    timeout=300,",
    ")",
    "response.raise_for_status()",
    "result = response.json()",
    'print("seed", result["request"]["data"]["seed"], result["timing"])',
    'for i, image in enumerate(result["images"]):',
    `    open(f"image-{i}.${ext}", "wb").write(base64.b64decode(image))`,
  ].join("\n");
}

function updateSnippet() {
  if (!state.models.size) return;
  $("snippet").textContent = snippetFor(state.snippet, requestBody());
}

function selectSnippet(kind) {
  state.snippet = kind;
  for (const name of ["curl", "openai", "httpx"]) {
    $(`tab-${name}`).setAttribute("aria-selected", String(name === kind));
  }
  updateSnippet();
}

// ---------------------------------------------------------------- the key

function showKeyState() {
  $("key-status").textContent = apiKey()
    ? "A key is saved in this browser's local storage."
    : "No key saved yet. It is kept in this browser's local storage only.";
}

function saveKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem(KEY_STORE, key);
  $("api-key").value = "";
  showKeyState();
  clearError();
}

function forgetKey() {
  localStorage.removeItem(KEY_STORE);
  showKeyState();
}

// ---------------------------------------------------------------- start

async function start() {
  $("generate-form").addEventListener("submit", generate);
  window.addEventListener("pagehide", cancelFollowedJob);
  $("generate-form").addEventListener("input", updateSnippet);
  $("generate-form").addEventListener("change", updateSnippet);
  $("model").addEventListener("change", applyModel);
  $("random-seed").addEventListener("change", () => {
    $("seed").disabled = $("random-seed").checked;
    if (!$("seed").disabled && !$("seed").value) $("seed").value = String(1 + Math.floor(Math.random() * 999999998));
    updateSnippet();
  });
  $("key-form").addEventListener("submit", saveKey);
  $("forget-key").addEventListener("click", forgetKey);
  for (const name of ["curl", "openai", "httpx"]) {
    $(`tab-${name}`).addEventListener("click", () => selectSnippet(name));
  }
  $("copy-snippet").addEventListener("click", () => navigator.clipboard?.writeText($("snippet").textContent));
  $("clear-history").addEventListener("click", () => {
    localStorage.removeItem(HISTORY_STORE);
    renderHistory();
  });
  renderHistory();
  try {
    const config = await getJson("/playground/config.json");
    state.authRequired = config.authRequired;
    $("footer").textContent = `murano ${config.version}`;
    $("key-section").hidden = !state.authRequired;
    showKeyState();
    const [models, styles] = await Promise.all([
      getJson(`${API}/models?type=image`),
      getJson(`${API}/image/styles`),
    ]);
    for (const entry of models.data) state.models.set(entry.id, entry);
    $("model").replaceChildren(
      ...models.data.map((m) => {
        const offline = m.model_spec.offline ? " (offline)" : "";
        return new Option(`${m.model_spec.name || m.id}${offline}`, m.id);
      }),
    );
    $("model").value = defaultModel(models.data);
    $("style").append(...styles.data.map((name) => new Option(name, name)));
    applyModel();
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(`Could not load the models: ${error.message}`);
  }
}

start();
