"""Reading ``POST /v1/videos``: a size-limited body, multipart (a ``photo`` file plus form fields) or JSON
(``image_base64`` plus fields), into validated parameters and the photo's bytes."""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import ValidationError
from starlette.requests import Request

from wanray.serving.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, describe_validation_errors
from wanray.serving.protocol import VideoJSONRequest, VideoParams
from wanray.inputs import InvalidInput

PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/x-ms-bmp")
BODY_TYPES = ("multipart/form-data", "application/json")


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is larger than ``limit``: a declared Content-Length
    is checked before reading, the bytes actually sent while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if declared_size > limit:
            raise PayloadTooLarge(_too_large(declared_size, limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(_too_large(len(body), limit))
    return bytes(body)


def _too_large(size: int, limit: int) -> str:
    return (f"the request is {size:,} bytes; the limit is {limit:,} ({limit / 2**20:.0f} MiB): send a smaller "
            f"photo (a JPEG of 1-2 megapixels is plenty)")


async def parse_video_request(request: Request, limit: int) -> tuple[VideoParams, bytes]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in BODY_TYPES:
        raise UnsupportedMediaType(
            f"send the request as multipart/form-data (a 'photo' file plus fields) or application/json "
            f"(with image_base64), not {media_type or 'no Content-Type'}"
        )
    body = await read_limited(request, limit)
    if media_type == "application/json":
        return _parse_json(body)
    return await _parse_multipart(request, body, limit)


def _parse_json(body: bytes) -> tuple[VideoParams, bytes]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = getattr(e, "pos", "?")
        raise BadRequest(f"the body is not valid JSON ({e.__class__.__name__} at position {where})") from None
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply; send one flat object") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object with image_base64 and the generation fields")
    try:
        parsed = VideoJSONRequest.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(describe_validation_errors(e.errors())) from None
    text = parsed.image_base64
    if text.startswith("data:") and "," in text:  # a data: URL, as browsers produce
        text = text.split(",", 1)[1]
    text = "".join(text.split())  # line-wrapped base64 (GNU base64, base64.encodebytes) is still base64
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image_base64 is not valid base64") from None
    params = VideoParams.model_validate(parsed.model_dump(exclude={"image_base64"}))
    return params, image


async def _parse_multipart(request: Request, body: bytes, limit: int) -> tuple[VideoParams, bytes]:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive=replay).form(max_files=1, max_fields=32, max_part_size=limit)
    except Exception as e:  # multipart parser errors of every kind
        raise BadRequest(f"the multipart body could not be parsed ({e.__class__.__name__}); send a 'photo' file "
                         f"and the fields as form fields") from None
    photo = form.get("photo")
    fields = {k: v for k, v in form.multi_items() if k != "photo"}
    if photo is None or isinstance(photo, str):
        raise InvalidInput("photo: a file field named 'photo' is required (the picture of the person)")
    content_type = (photo.content_type or "").split(";")[0].strip().lower()
    if content_type not in PHOTO_TYPES and content_type != "application/octet-stream":
        raise UnsupportedMediaType(f"photo must be a JPEG, PNG, WebP or BMP image, not {content_type or 'untyped'}")
    image = await photo.read()
    await form.close()
    # Empty form fields mean "not given" (HTML forms send every input).
    fields = {k: v for k, v in fields.items() if not (isinstance(v, str) and v.strip() == "")}
    try:
        params = VideoParams.model_validate(fields)
    except ValidationError as e:
        raise InvalidInput(describe_validation_errors(e.errors())) from None
    return params, image
