"""``bot.media.ffmpeg`` against real ffmpeg and real media files.

The clips come from ``media_files.make_mp4`` (cached H.264/AAC files like a provider's) and
the results are checked with ffprobe through ``media_files.probe``, not with the module's
own ``duration``, so a bug in one is not hidden by the other.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bot.media import ffmpeg
from bot.media.ffmpeg import FfmpegError
from tests.emulators.media_files import make_audio, make_mp4, probe
from tests.emulators.openai_images import render_png
from tests.emulators.openai_video import image_size

SIZE = "640x360"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def mean_volume(path: Path, start: float, length: float) -> float:
    """Mean loudness (dBFS) of a stretch of the file's audio, by ffmpeg's volumedetect."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-ss", str(start), "-t", str(length)]
    args += ["-i", str(path), "-vn", "-af", "volumedetect", "-f", "null", "-"]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    found = re.search(r"mean_volume: (-?[0-9.]+) dB", result.stderr)
    assert found is not None, result.stderr[-500:]
    return float(found.group(1))


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """Three 4 s clips: two with audio, one without (the join must give it silence)."""
    return [
        write(tmp_path / "a.mp4", make_mp4(4, SIZE, color="red")),
        write(tmp_path / "b.mp4", make_mp4(4, "1280x720", color="green", audio=False)),
        write(tmp_path / "c.mp4", make_mp4(4, SIZE, color="blue")),
    ]


def test_version_names_ffmpeg() -> None:
    line = ffmpeg.version()
    assert line is not None
    assert line.startswith("ffmpeg version")


async def test_fit_image_crops_to_the_exact_size() -> None:
    square = render_png(300, 300, (200, 40, 40), {})
    fitted = await ffmpeg.fit_image(square, "640x360")
    assert image_size(fitted) == (640, 360)
    portrait = render_png(200, 500, (40, 40, 200), {})
    assert image_size(await ffmpeg.fit_image(portrait, "720x1280")) == (720, 1280)


async def test_fit_image_refuses_garbage_in_plain_words() -> None:
    with pytest.raises(FfmpegError) as caught:
        await ffmpeg.fit_image(b"not an image at all", SIZE)
    assert caught.value.code == "input"
    assert "reference image" in caught.value.user_message
    assert "ffmpeg" not in caught.value.user_message.lower()
    with pytest.raises(ValueError, match="size"):
        await ffmpeg.fit_image(render_png(10, 10, (0, 0, 0), {}), "big")


async def test_join_trims_scales_and_concatenates(tmp_path: Path, clips: list[Path]) -> None:
    out = tmp_path / "story" / "story.mp4"
    seconds = await ffmpeg.join(list(zip(clips, [3.0, 2.0, 4.0], strict=True)), out, size=SIZE)
    info = probe(out.read_bytes())
    assert seconds == pytest.approx(9.0, abs=0.15)
    assert info["duration"] == pytest.approx(9.0, abs=0.15)
    assert (info["width"], info["height"]) == (640, 360)
    assert (info["video_codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert info["fps"] == pytest.approx(24.0)
    assert info["has_audio"]
    assert info["audio_codec"] == "aac"
    assert await ffmpeg.duration(out) == pytest.approx(seconds)
    assert mean_volume(out, 0.0, 9.0) < -80  # the clips' own (silent) audio, no voice-over
    assert [p.name for p in out.parent.iterdir()] == ["story.mp4"]  # no temp files left


async def test_join_mixes_a_voiceover_and_pads_to_target(tmp_path: Path, clips: list[Path]) -> None:
    voice = write(tmp_path / "voice.mp3", make_audio(5.0))
    out = tmp_path / "voiced.mp4"
    seconds = await ffmpeg.join(
        [(clips[0], 2.0), (clips[1], 2.0)], out, size=SIZE, voiceover=voice, target_s=6.0
    )
    info = probe(out.read_bytes())
    assert seconds == pytest.approx(6.0, abs=0.15)
    assert info["duration"] == pytest.approx(6.0, abs=0.15)
    assert info["has_audio"] and info["has_video"]
    assert (info["channels"], info["sample_rate"]) == (2, 48_000)
    # The voice (a tone) is heard over the silent clips, and on over the held last frame ...
    assert mean_volume(out, 0.2, 3.6) > -45
    assert mean_volume(out, 4.2, 0.6) > -45
    assert mean_volume(out, 5.3, 0.6) < -80  # ... until it ends


def lavfi(out: Path, *sources: str) -> Path:
    """A small file from ffmpeg's generators (for what ``media_files`` does not make)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for source in sources:
        args += ["-f", "lavfi", "-i", source]
    subprocess.run([*args, "-shortest", str(out)], capture_output=True, timeout=60, check=True)
    return out


async def test_voiceover_ducks_the_clips_own_audio(tmp_path: Path) -> None:
    loud = lavfi(
        tmp_path / "loud.mp4",
        "color=c=gray:s=320x180:r=24:d=2",
        "sine=frequency=1000:sample_rate=48000:d=2",
    )
    quiet_voice = lavfi(tmp_path / "silence.wav", "anullsrc=r=24000:cl=mono:d=2")
    plain = await ffmpeg.join([(loud, 2.0)], tmp_path / "plain.mp4", size="320x180")
    ducked = await ffmpeg.join(
        [(loud, 2.0)], tmp_path / "ducked.mp4", size="320x180", voiceover=quiet_voice
    )
    assert plain == pytest.approx(ducked, abs=0.05)
    drop = mean_volume(tmp_path / "plain.mp4", 0.2, 1.5) - mean_volume(
        tmp_path / "ducked.mp4", 0.2, 1.5
    )
    assert drop == pytest.approx(12.0, abs=1.0)


async def test_join_trims_to_a_shorter_target(tmp_path: Path, clips: list[Path]) -> None:
    out = tmp_path / "short.mp4"
    seconds = await ffmpeg.join(
        [(clips[0], 4.0), (clips[2], 4.0)], out, size="360x640", target_s=5.0
    )
    info = probe(out.read_bytes())
    assert seconds == pytest.approx(5.0, abs=0.15)
    assert (info["width"], info["height"]) == (360, 640)


async def test_join_missing_or_corrupt_input_is_plain_words(
    tmp_path: Path, clips: list[Path]
) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(FfmpegError) as missing:
        await ffmpeg.join([(clips[0], 2.0), (tmp_path / "gone.mp4", 2.0)], out, size=SIZE)
    assert missing.value.code == "input"
    assert "missing" in missing.value.user_message
    corrupt = write(tmp_path / "corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    with pytest.raises(FfmpegError) as damaged:
        await ffmpeg.join([(corrupt, 2.0)], out, size=SIZE)
    assert damaged.value.code == "input"
    for error in (missing.value, damaged.value):
        assert str(tmp_path) not in error.user_message
        assert "ffmpeg" not in error.user_message.lower()
    with pytest.raises(FfmpegError) as bad_voice:
        await ffmpeg.join([(clips[0], 2.0)], out, size=SIZE, voiceover=corrupt)
    assert bad_voice.value.code == "input"
    assert not out.exists()
    with pytest.raises(FfmpegError):
        await ffmpeg.duration(corrupt)
