"""Real, small media files for tests: H.264/AAC MP4 clips and audio tones, made with ffmpeg.

The video and speech emulators answer with bytes that real tools can open, so the app's
download, probe, concatenation and upload code handles the same kind of files a provider
would send. Everything is built from ffmpeg's ``lavfi`` sources (a solid ``color`` frame,
``anullsrc`` silence, a ``sine`` tone); a text label is drawn with ``drawtext`` only when
ffmpeg has that filter and a font is installed, and is always stored as the file's
``title`` tag, so nothing depends on fonts.

Encoding is done once per set of arguments: results are kept in an in-process dict and in
a directory under the system temp dir (shared by processes and later runs; files are
written atomically). Outputs are bit-exact (no timestamps or encoder strings), so the
same arguments give the same bytes.

The functions are synchronous and bounded by timeouts; from async code use the
``*_async`` variants, which run them in a worker thread so the event loop keeps serving
other requests. ffmpeg is looked up when first needed, not at import time: importing this
module (or the emulators that use it) never fails, and a missing ffmpeg gives
``RuntimeError("ffmpeg is required ...")`` at the first call that needs it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "AUDIO_CONTENT_TYPES",
    "AudioFormat",
    "make_audio",
    "make_audio_async",
    "make_mp4",
    "make_mp4_async",
    "probe",
    "probe_async",
    "require_ffmpeg",
]

AudioFormat = Literal["mp3", "wav"]

AUDIO_CONTENT_TYPES: Final[dict[str, str]] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
"""Content-Type per format supported by ``make_audio``, as OpenAI's speech endpoint sends."""

_CACHE_VERSION: Final = "v1"  # bump when the encoding settings change
_CACHE_DIR: Final = Path(tempfile.gettempdir()) / f"storyloop-test-media-{_CACHE_VERSION}"
_ENCODE_TIMEOUT_S: Final = 120.0
_PROBE_TIMEOUT_S: Final = 30.0
_MAX_SECONDS: Final = 600.0
_MAX_EDGE: Final = 4096
_FPS: Final = 24
_AUDIO_RATE: Final = 24_000  # OpenAI's speech output rate
_VIDEO_AUDIO_RATE: Final = 48_000
_SIZE_RE: Final = re.compile(r"(\d{1,4})x(\d{1,4})")
# Colour names ("blue", "DarkSlateGray") or hex ("#1e90ff", "0x1E90FF"): nothing that could
# reach the filter graph as syntax.
_COLOUR_RE: Final = re.compile(r"[A-Za-z]{1,32}|(?:#|0x)[0-9A-Fa-f]{6}")
_FONT_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
)

_memory: dict[str, bytes] = {}
_memory_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = {}


# ---------------------------------------------------------------------- public API


def require_ffmpeg() -> tuple[str, str]:
    """Paths of ``ffmpeg`` and ``ffprobe``; ``RuntimeError`` naming the fix if either is missing."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        missing = " and ".join(
            name for name, path in (("ffmpeg", ffmpeg), ("ffprobe", ffprobe)) if path is None
        )
        raise RuntimeError(
            f"ffmpeg is required to make and probe test media files, but {missing} is not "
            "on PATH. Install it (Debian/Ubuntu: apt-get install -y ffmpeg; .ci/bootstrap "
            "does this)."
        )
    return ffmpeg, ffprobe


def make_mp4(
    seconds: float,
    size: str = "640x360",
    *,
    label: str = "",
    color: str = "blue",
    audio: bool = True,
) -> bytes:
    """A real MP4 clip: H.264 (yuv420p, 24 fps) plus a silent AAC track, ``+faststart``.

    ``seconds`` > 0 (fractions allowed, at most 600); ``size`` is ``WxH`` with even edges
    (yuv420p needs them). ``label`` is drawn in the middle when fonts are available and is
    always stored as the ``title`` tag; ``color`` is an ffmpeg colour name or ``#RRGGBB``.
    ``audio=False`` leaves the audio track out. Cached per arguments; raises ``ValueError``
    for bad arguments and ``RuntimeError`` if ffmpeg is missing or fails.
    """
    duration = _seconds(seconds)
    width, height = _even_size(size)
    if not isinstance(color, str) or not _COLOUR_RE.fullmatch(color):
        raise ValueError(f"color must be a colour name or #RRGGBB, not {color!r}")
    key = json.dumps(["mp4", duration, width, height, label, color, audio])
    return _cached(
        key, "mp4", lambda out: _encode_mp4(out, duration, width, height, label, color, audio)
    )


def make_audio(seconds: float, fmt: AudioFormat = "mp3") -> bytes:
    """A 440 Hz mono tone at 24 kHz: MP3 (48 kbit/s) or 16-bit WAV; cached per arguments."""
    duration = _seconds(seconds)
    if fmt not in AUDIO_CONTENT_TYPES:
        raise ValueError(f"fmt must be one of {sorted(AUDIO_CONTENT_TYPES)}, not {fmt!r}")
    key = json.dumps(["audio", duration, fmt])
    return _cached(key, fmt, lambda out: _encode_audio(out, duration, fmt))


def probe(data: bytes) -> dict[str, Any]:
    """What ``ffprobe -print_format json`` says about some media bytes.

    Returns ``duration`` (seconds, float), ``format`` (ffprobe's format name, e.g.
    ``mov,mp4,m4a,3gp,3g2,mj2``), ``width``/``height``/``video_codec``/``pix_fmt``/``fps``
    of the first video stream (None without one), ``has_video``, ``has_audio``,
    ``audio_codec``/``sample_rate``/``channels`` of the first audio stream (None without
    one), ``tags`` (the container tags) and ``raw`` (ffprobe's full answer).
    Raises ``ValueError`` if ffprobe cannot read the data.
    """
    _, ffprobe = require_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="storyloop-probe-") as tmp:
        path = Path(tmp) / "media"
        path.write_bytes(data)
        result = _run(
            [
                ffprobe,
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                str(path),
            ],
            _PROBE_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        raise ValueError(f"ffprobe could not read the data: {_tail(result.stderr)}")
    raw = json.loads(result.stdout)
    streams = raw.get("streams", [])
    fmt = raw.get("format", {})
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    sound = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = fmt.get("duration") or (video or sound or {}).get("duration")
    return {
        "duration": float(duration) if duration is not None else None,
        "format": fmt.get("format_name"),
        "has_video": video is not None,
        "has_audio": sound is not None,
        "width": int(video["width"]) if video else None,
        "height": int(video["height"]) if video else None,
        "video_codec": video.get("codec_name") if video else None,
        "pix_fmt": video.get("pix_fmt") if video else None,
        "fps": _rate(video.get("avg_frame_rate")) if video else None,
        "audio_codec": sound.get("codec_name") if sound else None,
        "sample_rate": int(sound["sample_rate"]) if sound and "sample_rate" in sound else None,
        "channels": sound.get("channels") if sound else None,
        "tags": dict(fmt.get("tags", {})),
        "raw": raw,
    }


async def make_mp4_async(
    seconds: float,
    size: str = "640x360",
    *,
    label: str = "",
    color: str = "blue",
    audio: bool = True,
) -> bytes:
    """``make_mp4`` in a worker thread (the event loop keeps running while ffmpeg encodes)."""
    return await asyncio.to_thread(make_mp4, seconds, size, label=label, color=color, audio=audio)


async def make_audio_async(seconds: float, fmt: AudioFormat = "mp3") -> bytes:
    """``make_audio`` in a worker thread."""
    return await asyncio.to_thread(make_audio, seconds, fmt)


async def probe_async(data: bytes) -> dict[str, Any]:
    """``probe`` in a worker thread."""
    return await asyncio.to_thread(probe, data)


# ---------------------------------------------------------------------- encoding


def _encode_mp4(
    out: Path, duration: str, width: int, height: int, label: str, color: str, audio: bool
) -> None:
    ffmpeg, _ = require_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="storyloop-mp4-") as tmp:
        graph = f"color=c={color}:s={width}x{height}:r={_FPS}:d={duration}"
        font = _font() if label else None
        if font is not None:
            text_file = Path(tmp) / "label.txt"
            text_file.write_text(label, encoding="utf-8")
            size = max(12, min(width, height) // 12)
            graph += (
                f",drawtext=fontfile='{_filter_path(font)}':textfile='{_filter_path(text_file)}'"
                f":expansion=none:fontcolor=white:fontsize={size}"
                ":x=(w-text_w)/2:y=(h-text_h)/2:box=1:boxcolor=black@0.4:boxborderw=8"
            )
        args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        args += ["-f", "lavfi", "-i", graph + ",format=yuv420p"]
        if audio:
            args += ["-f", "lavfi", "-i", f"anullsrc=r={_VIDEO_AUDIO_RATE}:cl=stereo"]
        args += ["-t", duration, "-map", "0:v"]
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p"]
        args += ["-maxrate", "400k", "-bufsize", "800k", "-g", str(_FPS * 2), "-threads", "2"]
        if audio:
            args += ["-map", "1:a", "-c:a", "aac", "-b:a", "32k", "-ac", "2"]
        args += ["-movflags", "+faststart", "-map_metadata", "-1"]
        args += ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
        if label:
            args += ["-metadata", f"title={label}"]
        args += ["-f", "mp4", str(out)]
        _run(args, _ENCODE_TIMEOUT_S)


def _encode_audio(out: Path, duration: str, fmt: str) -> None:
    ffmpeg, _ = require_ffmpeg()
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={_AUDIO_RATE}:d={duration}"]
    args += ["-af", "volume=0.3", "-ac", "1", "-map_metadata", "-1"]
    args += ["-fflags", "+bitexact", "-flags:a", "+bitexact"]
    if fmt == "mp3":
        args += ["-c:a", "libmp3lame", "-b:a", "48k", "-write_xing", "1", "-id3v2_version", "0"]
        args += ["-f", "mp3"]
    else:
        args += ["-c:a", "pcm_s16le", "-f", "wav"]
    args.append(str(out))
    _run(args, _ENCODE_TIMEOUT_S)


def _run(
    args: list[str], timeout: float, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a tool with a timeout; ``RuntimeError`` (with its stderr) on failure when ``check``."""
    try:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{Path(args[0]).name} timed out after {timeout:g} s") from exc
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} failed (exit {result.returncode}): {_tail(result.stderr)}"
        )
    return result


# ---------------------------------------------------------------------- caching


def _cached(key: str, suffix: str, build: Any) -> bytes:
    """Bytes for ``key``: from memory, else the temp-dir cache, else ``build(path)``.

    A per-key lock makes concurrent callers (threads) wait for one encode instead of
    running several; the file is renamed into place, so other processes never read a
    partial file.
    """
    with _memory_lock:
        data = _memory.get(key)
        if data is not None:
            return data
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        with _memory_lock:
            data = _memory.get(key)
        if data is not None:
            return data
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = _CACHE_DIR / f"{digest}.{suffix}"
        try:
            data = path.read_bytes()
        except OSError:
            data = None
        if not data:
            _CACHE_DIR.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{digest}-", suffix=f".{suffix}", dir=_CACHE_DIR
            )
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                build(tmp)
                data = tmp.read_bytes()
                if not data:
                    raise RuntimeError("ffmpeg produced an empty file")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        with _memory_lock:
            _memory[key] = data
        return data


# ---------------------------------------------------------------------- helpers


def _seconds(value: float) -> str:
    """Duration as ffmpeg text, rounded to milliseconds; ``ValueError`` if out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"seconds must be a number, not {value!r}")
    if not 0 < value <= _MAX_SECONDS:
        raise ValueError(f"seconds must be in (0, {_MAX_SECONDS:g}], not {value!r}")
    return f"{round(float(value), 3):g}"


def _even_size(size: str) -> tuple[int, int]:
    match = _SIZE_RE.fullmatch(size) if isinstance(size, str) else None
    if match is None:
        raise ValueError(f"size must look like '640x360', not {size!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= _MAX_EDGE and 0 < height <= _MAX_EDGE) or width % 2 or height % 2:
        raise ValueError(f"size edges must be even and at most {_MAX_EDGE}, not {size!r}")
    return width, height


@functools.cache
def _font() -> str | None:
    """A TrueType font for ``drawtext``, or None (no fonts, or ffmpeg built without it)."""
    ffmpeg, _ = require_ffmpeg()
    filters = _run([ffmpeg, "-hide_banner", "-filters"], _PROBE_TIMEOUT_S, check=False)
    if re.search(r"^\s*\S+\s+drawtext\s", filters.stdout, re.MULTILINE) is None:
        return None
    candidates = list(_FONT_CANDIDATES)
    fc_match = shutil.which("fc-match")
    if fc_match is not None:
        found = _run([fc_match, "-f", "%{file}", "sans"], 10.0, check=False).stdout.strip()
        if found:
            candidates.insert(0, found)
    return next((c for c in candidates if c.endswith((".ttf", ".otf")) and Path(c).is_file()), None)


def _filter_path(path: str | Path) -> str:
    """A path quoted for an ffmpeg filter option value inside single quotes."""
    return str(path).replace("\\", "/").replace("'", r"'\''").replace(":", r"\:")


def _rate(value: Any) -> float | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    num, _, den = value.partition("/")
    try:
        return float(num) / float(den) if float(den) else None
    except ValueError:
        return None


def _tail(text: str, limit: int = 600) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else "…" + text[-limit:]
