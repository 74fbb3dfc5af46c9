"""Validate a generation request before any model work; errors name the value and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from wanray.config import GenerationConfig
from wanray.sampling import SAMPLERS
from wanray.specs import ModelSpec
from wanray.video import fit, read_video

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "MPO")
MIN_IMAGE_SIDE = 16
MAX_SEED = 2**63 - 2  # torch's generator takes a signed 64-bit seed; the renoise sampler also seeds with seed + 1
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: larger than any phone photo, small enough to decode safely
MAX_SIDE = 2048
MAX_FRAMES = 241
MAX_STEPS = 1000
# A Wan Fun-Control DiT takes 16 noisy + 16 control + 16 image-latent channels.
FUN_CONTROL_IN_DIM = 48


class InvalidInput(ValueError):
    """A request value is not acceptable; the message says what to change."""


def nearest_valid_frames(frames: int) -> tuple[int, int]:
    below = max(1, (frames - 1) // 4 * 4 + 1)
    return below, below + 4


def check_frames(frames: int) -> None:
    if not isinstance(frames, int) or frames < 1:
        raise InvalidInput(f"frames must be a positive whole number, got {frames!r}")
    if frames % 4 != 1:
        lo, hi = nearest_valid_frames(frames)
        raise InvalidInput(
            f"frames must be of the form 4n+1 (Wan's VAE compresses time 4x), got {frames}; use {lo} or {hi} "
            f"(at 15 fps, 77 frames is 5.1 s). It is not rounded for you, so the length you get is the one you asked for."
        )
    if frames > MAX_FRAMES:
        raise InvalidInput(f"frames must be at most {MAX_FRAMES}, got {frames}")


def check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or value <= 0:
            raise InvalidInput(f"{name} must be a positive whole number, got {value!r}")
        if value > MAX_SIDE:
            raise InvalidInput(f"{name} must be at most {MAX_SIDE}, got {value}")
    if height % 16 or width % 16:
        fix = f"{round(height / 16) * 16 or 16}x{round(width / 16) * 16 or 16}"
        raise InvalidInput(
            f"height and width must be multiples of 16 but are {height} and {width}; try {fix} (height x width)"
        )


def load_image(value: object, what: str = "image") -> Image.Image:
    """A PIL image from a path or an image; checks type, decodability and pixel count."""
    if isinstance(value, Image.Image):
        image = value
    else:
        if value is None:
            raise InvalidInput(f"{what} is required (the photo to animate)")
        path = Path(str(value))
        if not path.is_file():
            raise InvalidInput(f"{what} {str(path)!r} does not exist or is not a file")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidInput(f"{what} must be one of {', '.join(IMAGE_SUFFIXES)}; got {path.suffix or 'no extension'}")
        image = open_image_checked(path.read_bytes(), what)
    _check_pixels(image.width, image.height, what)
    return image.convert("RGB")


def open_image_checked(data: bytes, what: str = "image") -> Image.Image:
    """Decode image bytes safely: size is checked from the header before pixels are decoded."""
    import io

    unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
    try:
        image = Image.open(io.BytesIO(data))
        image.verify()  # header and structure; raises on non-image data (not on a JPEG cut short: load() does)
        image = Image.open(io.BytesIO(data))
    except unreadable as e:
        raise InvalidInput(f"{what} could not be read as an image ({type(e).__name__}); send a JPEG, PNG, WebP or BMP") from e
    except Image.DecompressionBombError as e:
        raise InvalidInput(f"{what} has too many pixels (limit {MAX_IMAGE_PIXELS:,})") from e
    if image.format not in IMAGE_FORMATS:
        raise InvalidInput(f"{what} is a {image.format} image; send a JPEG, PNG, WebP or BMP")
    _check_pixels(image.width, image.height, what)
    try:
        image.load()
    except unreadable as e:
        raise InvalidInput(f"{what} is cut short or damaged ({e}); send the whole file") from e
    # phones store portraits sideways with an EXIF Orientation tag that viewers apply: so do we
    return ImageOps.exif_transpose(image)


def check_fps(fps: float) -> None:
    if not 1 <= fps <= 60:
        raise InvalidInput(f"fps must be from 1 to 60, got {fps}")


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(f"{what} is {width}x{height} = {width * height:,} pixels; the limit is {MAX_IMAGE_PIXELS:,}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidInput(f"{what} is {width}x{height}; each side must be at least {MIN_IMAGE_SIDE} pixels")


def load_frames(value: object, frames: int, width: int, height: int, what: str,
                fps: float | None = None) -> list[Image.Image] | None:
    """The first ``frames`` frames of a video (path or list of images), fitted to the output size; a file is sampled
    at ``fps`` (the clip's rate) when given, so its motion keeps its speed whatever the file's rate."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        video = list(value)
    else:
        path = Path(str(value))
        if not path.is_file():
            raise InvalidInput(f"{what} {str(path)!r} does not exist or is not a file")
        try:
            video, _ = read_video(path, max_frames=frames, at_fps=fps)
        except Exception as e:
            raise InvalidInput(f"{what} {path.name!r} could not be decoded as a video ({type(e).__name__})") from e
    if len(video) < frames:
        raise InvalidInput(f"{what} has {len(video)} frames but the request needs {frames}; send a longer video or ask for fewer frames")
    return [fit(f, width, height) for f in video[:frames]]


@dataclass(kw_only=True)
class PreparedRequest:
    """A validated request, with images and videos decoded and fitted to the output size."""

    image: Image.Image
    end_image: Image.Image | None
    control_video: list[Image.Image] | None
    vace_video: list[Image.Image] | None
    vace_video_mask: list[Image.Image] | None
    vace_reference_image: Image.Image | None
    height: int
    width: int
    frames: int
    steps: int
    cfg: float
    sigma_shift: float


def prepare(config: GenerationConfig, spec: ModelSpec) -> PreparedRequest:
    """Check every field of ``config`` against ``spec``; decode media. Raises InvalidInput."""
    height = config.height if config.height is not None else spec.default_height
    width = config.width if config.width is not None else spec.default_width
    check_size(height, width)
    check_frames(config.frames)
    steps = config.steps if config.steps is not None else spec.default_steps
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidInput(f"steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    cfg = config.cfg if config.cfg is not None else spec.default_cfg
    if not 0 < cfg <= 30:
        raise InvalidInput(f"cfg must be in (0, 30], got {cfg}; 1 turns classifier-free guidance off")
    if config.sampler not in SAMPLERS:
        raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {config.sampler!r}")
    check_fps(config.fps)
    if not isinstance(config.prompt, str):
        raise InvalidInput("prompt must be text")
    if config.tea_cache is not None and not 0 < config.tea_cache < 1:
        raise InvalidInput(f"tea_cache threshold must be in (0, 1), got {config.tea_cache} (0.1-0.3 is typical)")
    if not isinstance(config.seed, int) or not 0 <= config.seed <= MAX_SEED:
        raise InvalidInput(f"seed must be a whole number from 0 to {MAX_SEED}, got {config.seed!r}")
    vace_inputs = (config.vace_video, config.vace_video_mask, config.vace_reference_image)
    if any(v is not None for v in vace_inputs) and spec.vace is None:
        raise InvalidInput(f"model {spec.name!r} has no VACE branch; remove the vace_* inputs")
    if config.vace_reference_image is not None and spec.dit.has_image_input:
        # DiffSynth prepends the reference as one more latent frame, which an image-to-video DiT's y has no slot for
        raise InvalidInput(f"model {spec.name!r} is image-to-video: its photo already fixes the character; drop "
                           "vace_reference_image (a text-to-video VACE model takes one)")
    if config.control_video is not None and spec.dit.in_dim != FUN_CONTROL_IN_DIM:
        raise InvalidInput(
            f"model {spec.name!r} takes no control_video (its DiT has in_dim {spec.dit.in_dim}; a Fun-Control DiT "
            f"has {FUN_CONTROL_IN_DIM}); pass the pose video as vace_video instead"
        )
    image = fit(load_image(config.image, "image"), width, height)
    end_image = fit(load_image(config.end_image, "end_image"), width, height) if config.end_image is not None else None
    ref = config.vace_reference_image
    return PreparedRequest(
        image=image,
        end_image=end_image,
        control_video=load_frames(config.control_video, config.frames, width, height, "control_video", config.fps),
        vace_video=load_frames(config.vace_video, config.frames, width, height, "vace_video", config.fps),
        vace_video_mask=load_frames(config.vace_video_mask, config.frames, width, height, "vace_video_mask",
                                    config.fps),
        vace_reference_image=fit(load_image(ref, "vace_reference_image"), width, height) if ref is not None else None,
        height=height,
        width=width,
        frames=config.frames,
        steps=steps,
        cfg=float(cfg),
        sigma_shift=config.sigma_shift if config.sigma_shift is not None else spec.default_sigma_shift,
    )
