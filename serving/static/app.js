// The wanray web page: upload a photo, pick a dance, follow the job, play and download the video.
// Every URL is relative, so the page works under any Serve route prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
let currentJob = null;
let videoUrl = null;

function authHeaders() {
  const token = $("token").value.trim() || localStorage.getItem("wanray-token") || "";
  if ($("token").value.trim()) localStorage.setItem("wanray-token", token);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

function showError(message) {
  $("job").hidden = false;
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadChoices() {
  try {
    const dances = await (await api("v1/dances")).json();
    const box = $("dances");
    box.textContent = "";
    dances.forEach((dance, i) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.textContent = dance.name;
      chip.dataset.dance = dance.name;
      chip.setAttribute("role", "radio");
      chip.setAttribute("aria-checked", "false");
      chip.addEventListener("click", () => selectDance(dance));
      box.appendChild(chip);
      if (i === 0) selectDance(dance);
    });
    const loras = await (await api("v1/loras")).json();
    loras.forEach((name) => {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      $("lora").appendChild(option);
    });
  } catch (e) {
    showError(e.status === 401 ? "This server needs an API token: enter it under More settings, then reload." : e.message);
  }
}

let selectedDance = null;
function selectDance(dance) {
  const previous = selectedDance;
  selectedDance = dance;
  document.querySelectorAll(".chip").forEach((chip) =>
    chip.setAttribute("aria-checked", String(chip.dataset.dance === dance.name)));
  // replace the prompt only if the user has not written their own
  if (!$("prompt").value || (previous && $("prompt").value === previous.prompt)) $("prompt").value = dance.prompt;
}

$("photo").addEventListener("change", () => {
  const file = $("photo").files[0];
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("drop-hint").textContent = file.name;
});

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("photo").files[0];
  if (!file) { showError("Choose a photo first."); return; }
  const form = new FormData();
  form.append("photo", file);
  if (selectedDance) form.append("dance", selectedDance.name);
  form.append("prompt", $("prompt").value);
  for (const name of ["height", "width", "frames", "steps", "seed", "lora"]) {
    if ($(name).value !== "") form.append(name, $(name).value);
  }
  resetJobView();
  $("submit").disabled = true;
  try {
    const job = await (await api("v1/videos", { method: "POST", body: form })).json();
    currentJob = job.id;
    render(job);
    poll(job.id);
  } catch (e) {
    showError(e.message);
    $("submit").disabled = false;
  }
});

function resetJobView() {
  $("job").hidden = false;
  $("error").hidden = true;
  $("video").hidden = true;
  $("download").hidden = true;
  $("progress").value = 0;
  if (videoUrl) URL.revokeObjectURL(videoUrl);
  videoUrl = null;
}

function describe(job) {
  const p = job.progress;
  const eta = job.eta_seconds != null ? ` · about ${Math.ceil(job.eta_seconds)} s left` : "";
  switch (job.status) {
    case "queued": return `Queued${job.queue_position ? ` (${job.queue_position} ahead)` : ""}${eta}`;
    case "running": return (p.steps ? `Dancing… step ${p.step} of ${p.steps}` : "Starting…") + eta;
    case "succeeded": return "Done! Here is your video.";
    case "failed": return "It did not work.";
    case "cancelled": return "Cancelled.";
  }
  return job.status;
}

function render(job) {
  $("status").textContent = describe(job);
  $("progress").value = job.status === "succeeded" ? 1 : job.progress.fraction;
  $("cancel").hidden = !(job.status === "queued" || job.status === "running");
  if (job.error && job.status !== "succeeded") showError(job.error);
}

async function poll(id) {
  while (currentJob === id) {
    let job;
    try {
      job = await (await api(`v1/videos/${id}`)).json();
    } catch (e) {
      showError(e.message);
      await new Promise((r) => setTimeout(r, POLL_MS * 3));
      continue;
    }
    render(job);
    if (job.status === "succeeded") { await showVideo(id); break; }
    if (job.status === "failed" || job.status === "cancelled") break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  $("submit").disabled = false;
}

async function showVideo(id) {
  // fetched (not a plain src) so a bearer token can be sent; the blob URL serves playback and download
  const blob = await (await api(`v1/videos/${id}/content`)).blob();
  videoUrl = URL.createObjectURL(blob);
  $("video").src = videoUrl;
  $("video").hidden = false;
  $("video").play().catch(() => {});
  $("download").href = videoUrl;
  $("download").download = `wanray-${id}.mp4`;
  $("download").hidden = false;
}

$("cancel").addEventListener("click", async () => {
  if (!currentJob) return;
  try { render(await (await api(`v1/videos/${currentJob}`, { method: "DELETE" })).json()); }
  catch (e) { showError(e.message); }
});

loadChoices();
