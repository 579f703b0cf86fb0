"""Local media work with ffmpeg: fitting a reference image, joining clips, measuring files.

No network and nothing paid happens here, but ffmpeg is an external program that can be
missing, slow or handed a broken file, so every run is an ``asyncio`` subprocess (the event
loop keeps serving Slack while it encodes), bounded by a timeout, killed if cancelled. Its
stderr goes to the log only: ``FfmpegError.user_message`` is plain words, because ffmpeg's
messages mean nothing to a Slack user and may contain file paths.

All arguments are passed as an argument list (no shell), and file paths never appear inside
a filter graph, so no quoting of user-controlled text is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

FPS: Final = 24
AUDIO_RATE: Final = 48_000
DUCK_DB: Final = -12.0  # the clips' own audio under a voice-over
JOIN_TIMEOUT_S: Final = 300.0
IMAGE_TIMEOUT_S: Final = 60.0
PROBE_TIMEOUT_S: Final = 30.0
_SIZE_RE: Final = re.compile(r"(\d{1,5})x(\d{1,5})")
_MAX_EDGE: Final = 8192
_STDERR_TAIL: Final = 2000


class FfmpegError(Exception):
    """Local media processing failed. ``code``: ``missing`` (ffmpeg not installed),
    ``input`` (a file is missing or unreadable), ``timeout`` or ``failed``; ``user_message``
    is plain words safe for Slack (never ffmpeg's stderr)."""

    def __init__(self, code: str, user_message: str) -> None:
        super().__init__(code)
        self.code = code
        self.user_message = user_message


def version() -> str | None:
    """First line of ``ffmpeg -version``, or None when ffmpeg is missing or broken.

    Synchronous on purpose: ``storyloop check`` calls it before any event loop runs.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, binary from PATH
            [ffmpeg, "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0] if result.returncode == 0 and lines else None


def parse_size(size: str) -> tuple[int, int]:
    """``"1280x720"`` as (1280, 720); ``ValueError`` for anything else."""
    match = _SIZE_RE.fullmatch(size.strip()) if isinstance(size, str) else None
    if match is None:
        raise ValueError(f"size must look like 1280x720, not {size!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= _MAX_EDGE and 0 < height <= _MAX_EDGE):
        raise ValueError(f"size edges must be between 1 and {_MAX_EDGE}, not {size!r}")
    return width, height


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FfmpegError(
            "missing",
            "The video tools (ffmpeg) aren't installed on the server; an admin needs to "
            "install ffmpeg.",
        )
    return path


async def _run(args: list[str], *, limit_s: float, stdin: bytes | None = None, what: str) -> bytes:
    """Run a tool; its stdout, or ``FfmpegError`` (stderr logged, never shown).

    ``what`` is the step in plain words ("Putting the video together"), used in both the log
    and the user's message.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.error("%s: could not start %s: %s", what, Path(args[0]).name, exc)
        raise FfmpegError(
            "missing", "The video tools (ffmpeg) couldn't be started on the server."
        ) from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), limit_s)
    except TimeoutError:
        await _kill(proc)
        log.error("%s: %s timed out after %g s", what, Path(args[0]).name, limit_s)
        raise FfmpegError("timeout", f"{what} took too long. Use Retry in a minute.") from None
    except BaseException:
        await _kill(proc)
        raise
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-_STDERR_TAIL:]
        log.error("%s: %s exited %s: %s", what, Path(args[0]).name, proc.returncode, tail)
        raise FfmpegError(
            "failed",
            f"{what} failed on the server. Use Retry; if it keeps failing, an admin should "
            "check the logs.",
        )
    return stdout


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)


# ---------------------------------------------------------------------- images


async def fit_image(png: bytes, size: str) -> bytes:
    """``png`` (any format ffmpeg reads) scaled to cover ``WxH`` and centre-cropped to it.

    Video providers require an input reference image of exactly the clip's size; cropping
    (rather than padding) keeps the picture free of bars. The output is an opaque RGB PNG.
    """
    width, height = parse_size(size)
    if not png:
        raise FfmpegError("input", "The reference image is empty; make the image again.")
    ffmpeg = _tool("ffmpeg")
    graph = (
        f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
        f"crop={width}:{height},setsar=1,format=rgb24"
    )
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    args += ["-f", "image2pipe", "-i", "pipe:0", "-vf", graph, "-frames:v", "1"]
    args += ["-c:v", "png", "-f", "image2pipe", "pipe:1"]
    try:
        out = await _run(
            args, limit_s=IMAGE_TIMEOUT_S, stdin=png, what="Resizing the reference image"
        )
    except FfmpegError as exc:
        if exc.code != "failed":
            raise
        raise FfmpegError(
            "input", "The reference image couldn't be read; make the image again."
        ) from None
    if not out.startswith(b"\x89PNG"):
        raise FfmpegError("failed", "Resizing the reference image failed on the server.")
    return out


# ---------------------------------------------------------------------- probing


def _non_empty_file(path: Path) -> bool:
    """A quick metadata check (sync: one stat, not worth a thread)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _move(source: Path, target: Path) -> None:
    source.replace(target)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _probe(path: Path) -> tuple[float, bool, bool]:
    """(duration, has video, has audio) of a media file; ``FfmpegError("input")`` if unreadable."""
    if not _non_empty_file(path):
        log.error("media file missing or empty: %s", path)
        raise FfmpegError("input", "A video or audio file is missing; it has to be made again.")
    ffprobe = _tool("ffprobe")
    args = [ffprobe, "-v", "error", "-show_entries", "format=duration:stream=codec_type"]
    args += ["-of", "default=noprint_wrappers=1", str(path)]
    try:
        raw = await _run(args, limit_s=PROBE_TIMEOUT_S, what="Checking a media file")
        out = raw.decode(errors="replace")
    except FfmpegError as exc:
        if exc.code != "failed":
            raise
        raise FfmpegError(
            "input", "A video or audio file is damaged or unreadable; it has to be made again."
        ) from None
    kinds = set(re.findall(r"^codec_type=(\w+)", out, re.MULTILINE))
    found = re.search(r"^duration=([0-9.]+)", out, re.MULTILINE)
    seconds = float(found.group(1)) if found else 0.0
    if seconds <= 0 or not kinds & {"video", "audio"}:
        log.error("media file has no usable streams or duration: %s", path)
        raise FfmpegError(
            "input", "A video or audio file is damaged or unreadable; it has to be made again."
        )
    return seconds, "video" in kinds, "audio" in kinds


async def duration(path: Path) -> float:
    """Length of a media file in seconds (ffprobe's container duration)."""
    seconds, _, _ = await _probe(path)
    return seconds


# ---------------------------------------------------------------------- joining


def _secs(value: float) -> str:
    return f"{value:.3f}"


async def join(
    clips: Sequence[tuple[Path, float]],
    out: Path,
    *,
    size: str,
    voiceover: Path | None = None,
    target_s: float | None = None,
) -> float:
    """Join clips into one MP4 at ``out``; the output's duration in seconds.

    Each ``(path, seconds)`` is cut to ``seconds`` (the scene's length; a clip a little short
    holds its last frame), scaled and letterboxed to ``size``, set to 24 fps and given
    silence if it has no audio; then everything is re-encoded in one pass (clips from
    different providers rarely share codec parameters, so stream-copy concat is not safe).
    A voice-over is mixed over the clips' own audio, which is lowered by 12 dB under it. With
    ``target_s`` the result is trimmed, or padded by holding the last frame (and silence), to
    that length; without it the length is the sum of the clips' seconds. A voice-over longer
    than the result is cut at its end, so pass ``target_s`` to make room for it.
    Output: H.264 yuv420p + AAC, ``+faststart`` (plays while downloading in Slack), written
    to a temporary file and renamed so ``out`` is never half-written.
    """
    if not clips:
        raise ValueError("join needs at least one clip")
    width, height = parse_size(size)
    if width % 2 or height % 2:
        raise ValueError(f"size edges must be even for H.264 yuv420p, not {size!r}")
    if any(not seconds > 0 for _, seconds in clips):
        raise ValueError("every clip needs a positive length")
    if target_s is not None and not target_s > 0:
        raise ValueError("target_s must be positive")
    ffmpeg = _tool("ffmpeg")
    probes = [await _probe(Path(path)) for path, _ in clips]
    if not all(has_video for _, has_video, _ in probes):
        raise FfmpegError("input", "One of the clips has no picture; it has to be made again.")
    if voiceover is not None:
        await _probe(Path(voiceover))

    audio_format = f"aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    parts: list[str] = []
    labels: list[str] = []
    for index, ((path, seconds), (_, _, has_audio)) in enumerate(zip(clips, probes, strict=True)):
        args += ["-i", str(path)]
        s = _secs(seconds)
        parts.append(
            f"[{index}:v:0]setpts=PTS-STARTPTS,fps={FPS},"
            f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={s},trim=duration={s},setpts=PTS-STARTPTS"
            f"[v{index}]"
        )
        if has_audio:
            parts.append(
                f"[{index}:a:0]{audio_format},asetpts=PTS-STARTPTS,apad,"
                f"atrim=duration={s},asetpts=PTS-STARTPTS[a{index}]"
            )
        else:
            parts.append(
                f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE},"
                f"atrim=duration={s},{audio_format}[a{index}]"
            )
        labels.append(f"[v{index}][a{index}]")
    parts.append(f"{''.join(labels)}concat=n={len(clips)}:v=1:a=1[vcat][acat]")
    # Everything ends at ``length``: the clips' audio is padded or cut to it first, so a
    # voice-over runs on over held frames (amix stops with its first input).
    length = _secs(target_s if target_s is not None else sum(sec for _, sec in clips))
    parts.append(f"[acat]apad,atrim=duration={length},asetpts=PTS-STARTPTS[abed]")
    audio_label = "abed"
    if voiceover is not None:
        args += ["-i", str(voiceover)]
        parts.append(f"[{len(clips)}:a:0]{audio_format},asetpts=PTS-STARTPTS[voice]")
        parts.append(f"[abed]volume={DUCK_DB:g}dB[ducked]")
        parts.append(
            "[ducked][voice]amix=inputs=2:duration=first:dropout_transition=0:normalize=0[amix]"
        )
        audio_label = "amix"
    video_label = "vcat"
    if target_s is not None:
        total = sum(seconds for _, seconds in clips)
        hold = _secs(max(0.0, target_s - total) + 1.0)
        parts.append(
            f"[vcat]tpad=stop_mode=clone:stop_duration={hold},trim=duration={length},"
            "setpts=PTS-STARTPTS[vout]"
        )
        video_label = "vout"
    args += ["-filter_complex", ";".join(parts)]
    args += ["-map", f"[{video_label}]", "-map", f"[{audio_label}]"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
    args += ["-r", str(FPS), "-c:a", "aac", "-b:a", "128k", "-ar", str(AUDIO_RATE), "-ac", "2"]
    args += ["-movflags", "+faststart", "-f", "mp4"]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".mp4", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        await _run([*args, str(tmp)], limit_s=JOIN_TIMEOUT_S, what="Putting the video together")
        _move(tmp, out)
    finally:
        _remove(tmp)
    try:
        return await duration(out)
    except FfmpegError:
        raise FfmpegError(
            "failed", "Putting the video together produced an unreadable file. Use Retry."
        ) from None
