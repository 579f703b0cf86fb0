"""What the later stages make: reference image sets and storyboards, as versions.

Pure data. Only metadata lives here (and in Redis): names, prompts, Slack file ids, costs.
Image bytes go from the provider to a spool file to Slack and are never stored with a session.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from bot.pipeline.models import Usage


class ImageKind(StrEnum):
    CHARACTER = "character"
    LOCATION = "location"
    PROP = "prop"
    STYLE = "style"


class ImageSpec(BaseModel):
    """One planned reference image: what it is for and the prompt that makes it."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=1)  # 1-based, stable across versions (Redo names it)
    name: str
    kind: ImageKind
    role: str  # its role in the story, one sentence
    prompt: str


class ImageOutcome(StrEnum):
    MADE = "made"  # generated and uploaded into the thread
    FAILED = "failed"  # not made; ``failure`` says why in plain words


class ImageArtifact(BaseModel):
    """One image of a set as it came out: its Slack file and what it cost."""

    model_config = ConfigDict(frozen=True)

    spec: ImageSpec
    outcome: ImageOutcome
    file_id: str | None = None
    cost_usd: float = 0.0
    made_in: int = Field(ge=1)  # the set version that generated it (a Redo keeps the others)
    failure: str | None = None
    failure_code: str | None = None  # moderation_blocked, rate_limited, timeout, provider, …


class ImageSetVersion(BaseModel):
    """One version of the reference image set, with the feedback it answered."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    images: tuple[ImageArtifact, ...]
    usage: Usage = Usage()  # LLM tokens for planning the set
    cost_usd: float = 0.0  # what this version's new images cost
    feedback_ts: tuple[str, ...] = ()
    summary_of_changes: str = ""
    redo_of: int | None = None  # a Redo: the image index remade; the rest are kept
    created_at: float
    # A restore (bot/jobs/restore.py): the version this one copies, and who asked for it.
    restored_from: int | None = None
    restored_by: str | None = None

    @property
    def complete(self) -> bool:
        return all(i.outcome is ImageOutcome.MADE for i in self.images)

    def image(self, index: int) -> ImageArtifact | None:
        return next((i for i in self.images if i.spec.index == index), None)


class Shot(BaseModel):
    """One shot of the storyboard."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    scene: int = Field(ge=1)
    duration_s: int = Field(ge=1)
    shot_type: str
    camera: str
    action: str  # what we see
    audio: str  # voice-over or dialogue ("" for none)
    references: tuple[str, ...] = ()  # names of reference images it uses


class StoryboardVersion(BaseModel):
    """One version of the storyboard (a shot list), with the feedback it answered."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    shots: tuple[Shot, ...]
    usage: Usage = Usage()
    feedback_ts: tuple[str, ...] = ()
    summary_of_changes: str = ""
    created_at: float
    # A restore (bot/jobs/restore.py): the version this one copies, and who asked for it.
    restored_from: int | None = None
    restored_by: str | None = None

    @property
    def total_duration_s(self) -> int:
        return sum(s.duration_s for s in self.shots)


class ItemState(StrEnum):
    """A paid item's life: planned → submitted (the call is out) → fetched (bytes spooled,
    cost known) → uploaded (in the thread), or failed. Never submitted twice by itself."""

    PLANNED = "planned"
    SUBMITTED = "submitted"
    READY = "ready"  # a remote job finished at the provider; its bytes are not here yet
    FETCHED = "fetched"
    UPLOADED = "uploaded"
    FAILED = "failed"


class PaidItem(BaseModel):
    """One paid item of a generation under way (an image), as recorded before each step."""

    model_config = ConfigDict(frozen=True)

    state: ItemState
    cost_usd: float = 0.0
    spool: str | None = None  # where the bytes wait between the provider and Slack
    file_id: str | None = None
    failure: str | None = None
    failure_code: str | None = None
    # A remote job (video clip): its id, recorded before polling, and when it was asked for
    # (to adopt a job the provider accepted just before a crash).
    remote_id: str | None = None
    started_at: float | None = None
    progress: int = 0


class ClipPlan(BaseModel):
    """One clip of a planned video: a scene, at a length the provider supports."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=1)  # the clip's number (1-based)
    scene: int = Field(ge=1)  # the scene it shows (a scene longer than the longest clip has more)
    seconds: int = Field(ge=1)  # requested from the provider (a supported length)
    scene_s: int = Field(ge=1)  # how much of it the finished video uses (the scene's duration)
    prompt: str  # the scene's shots, as the provider's prompt
    reference: str | None = None  # the reference image used as the input image (by name)


class VideoPlan(BaseModel):
    """What rendering will cost, shown before anything is spent, and confirmed by a person."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)  # the plan's number; a confirm names it (an outdated one is refused)
    clips: tuple[ClipPlan, ...]
    model: str
    size: str
    voiceover: bool
    estimate_usd: float
    redo_of: int | None = None  # a Redo plan: the one scene it remakes
    # The thread replies that asked for this plan ("try again"): it is their answer.
    feedback_ts: tuple[str, ...] = ()
    created_at: float

    @property
    def seconds(self) -> int:
        return sum(c.seconds for c in self.clips)


class ClipResult(BaseModel):
    """One clip as rendered: the provider's job, its file in the thread, what it cost."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=1)
    scene: int = Field(ge=1)
    job_id: str | None = None
    file_id: str | None = None
    seconds: int = Field(ge=1)
    cost_usd: float = 0.0
    made_in: int = Field(ge=1)  # the video version that rendered it (a Redo keeps the rest)


class VideoVersion(BaseModel):
    """One finished video: its clips, the joined MP4 in the thread, and what it cost."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    plan: int = Field(ge=1)  # the confirmed plan it rendered
    clips: tuple[ClipResult, ...]
    file_id: str | None = None  # the joined MP4
    duration_s: float = 0.0
    voiceover: bool = False
    cost_usd: float = 0.0  # what this version's new clips and voice-over cost
    feedback_ts: tuple[str, ...] = ()
    redo_of: int | None = None
    created_at: float
    # A restore (bot/jobs/restore.py): the version this one copies, and who asked for it.
    restored_from: int | None = None
    restored_by: str | None = None
