"""The HTTP protocol: request and response models of the video API (one file, as the OpenAPI docs show them)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from wanray.serving.jobs import JobStatus

MAX_PROMPT_CHARS = 2000


class VideoParams(BaseModel):
    """What to generate. Every field but the photo is optional; omitted sizes and steps take the server's
    defaults. Give a ``prompt``, or a ``dance`` (GET /v1/dances), or both (the prompt wins)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Optional[str] = Field(None, max_length=MAX_PROMPT_CHARS, description="what the video shows")
    dance: Optional[str] = Field(None, max_length=64, description="a dance name from GET /v1/dances")
    negative_prompt: Optional[str] = Field(None, max_length=MAX_PROMPT_CHARS, description="what to avoid")
    height: Optional[int] = Field(None, description="output height, a multiple of 16")
    width: Optional[int] = Field(None, description="output width, a multiple of 16")
    frames: Optional[int] = Field(None, description="number of frames, 4n+1 (77 at 15 fps is 5.1 s)")
    fps: Optional[int] = Field(None, ge=1, le=60, description="frames per second of the mp4 (default 15)")
    steps: Optional[int] = Field(None, description="denoising steps")
    cfg: Optional[float] = Field(None, description="classifier-free guidance scale; 1 turns it off")
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1, description="noise seed (default: random, reported)")
    lora: Optional[str] = Field(None, max_length=100, description="a LoRA name from GET /v1/loras")
    lora_alpha: float = Field(1.0, ge=0, le=4, description="strength of the LoRA")


class VideoJSONRequest(VideoParams):
    """``POST /v1/videos`` with ``Content-Type: application/json``: the photo as base64."""

    image_base64: str = Field(..., description="the photo (JPEG, PNG, WebP or BMP), base64-encoded")


class Progress(BaseModel):
    step: int = Field(description="denoising steps done")
    steps: int = Field(description="denoising steps in total (0 until the job starts)")
    fraction: float


class JobView(BaseModel):
    """A job as the client sees it."""

    id: str
    status: JobStatus
    progress: Progress
    eta_seconds: Optional[float] = Field(None, description="estimated seconds until the video is ready")
    queue_position: Optional[int] = Field(None, description="jobs ahead of this one (queued jobs only)")
    error: Optional[str] = Field(None, description="why the job failed or was cancelled")
    cancel_requested: bool = False
    attempt: int = Field(0, description="deliveries so far (more than 1 after a replica was lost)")
    replica: Optional[str] = Field(None, description="the generator replica that ran (or runs) it")
    created_at: float
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    params: dict = Field(default_factory=dict, description="the request as it will run (defaults filled in)")
    content_url: Optional[str] = Field(None, description="where to download the mp4 once succeeded")


class DanceInfo(BaseModel):
    name: str
    prompt: str


class ErrorBody(BaseModel):
    error: str = Field(description="what went wrong and what to change")
