"""What the LLM is asked to return, and how a draft becomes a valid ``Story``.

The schemas double as the JSON schema sent to the endpoint (structured outputs). ``to_story``
makes any schema-valid draft true to the target duration — scene durations are rescaled when
they miss the target by more than 10% — and drops nothing the LLM wrote: long text is shown
whole across several Slack messages (``bot.slack.story_blocks``), and scenes beyond one per
second of the target are merged into the last scene rather than cut.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.pipeline.models import Scene, Story
from bot.pipeline.request import clean_text

MAX_SCENES = 30  # what later stages plan from (one shot list / clip per scene at most)
DURATION_TOLERANCE = 0.10


class SceneDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    duration_s: int = Field(description="Seconds on screen; all scenes add up to the target.")
    visuals: str = Field(description="What the viewer sees.")
    voiceover: str = Field(description="Narration or dialogue; empty string for none.")


class StoryDraft(BaseModel):
    """The story as requested from the LLM (schema name: ``story``)."""

    model_config = ConfigDict(extra="ignore")

    title: str
    logline: str
    narrative: str
    scenes: list[SceneDraft] = Field(min_length=1)
    summary_of_changes: str = Field(
        default="", description="One sentence on what changed from the previous version."
    )


class FeedbackAnswer(BaseModel):
    """The LLM's answer to thread feedback (schema name: ``feedback_reply``)."""

    model_config = ConfigDict(extra="ignore")

    reply: str = Field(description="Conversational answer: what will change and why.")
    planned_changes: list[str] = Field(
        default_factory=list, description="Short imperative list of the changes requested."
    )
    wants_regenerate: bool = Field(
        default=False, description="True only if the feedback asks to rewrite the story now."
    )
    targets: list[int] = Field(
        default_factory=list,
        description="Numbers of the images or shots the changes concern; empty for all.",
    )


SCHEMA_NAMES: dict[type[BaseModel], str] = {StoryDraft: "story", FeedbackAnswer: "feedback_reply"}


def _merge_overflow(scenes: list[SceneDraft], limit: int) -> list[SceneDraft]:
    """At most ``limit`` scenes, the extra ones' words joined onto the last kept scene (a scene
    needs a second of screen time, so a 30 s story has at most 30 of them)."""
    if len(scenes) <= limit:
        return scenes
    kept, extra = scenes[: limit - 1], scenes[limit - 1 :]
    merged = SceneDraft(
        duration_s=sum(max(1, s.duration_s) for s in extra),
        visuals=" / ".join(t for s in extra if (t := s.visuals.strip())),
        voiceover=" ".join(t for s in extra if (t := s.voiceover.strip())),
    )
    return [*kept, merged]


def fit_durations(durations: list[int], target_s: int) -> list[int]:
    """Rescale scene durations to the target when their sum misses it by more than 10%.

    Keeps every scene at least one second and makes the sum exact after rescaling.
    """
    durations = [max(1, d) for d in durations][: max(1, target_s)]
    total = sum(durations)
    if abs(total - target_s) <= DURATION_TOLERANCE * target_s:
        return durations
    scaled = [max(1, round(d * target_s / total)) for d in durations]
    diff = target_s - sum(scaled)
    order = sorted(range(len(scaled)), key=lambda i: scaled[i], reverse=True)
    i = 0
    while diff != 0:
        idx = order[i % len(order)]
        step = 1 if diff > 0 else -1
        if scaled[idx] + step >= 1:
            scaled[idx] += step
            diff -= step
        i += 1
    return scaled


def to_story(draft: StoryDraft, target_s: int) -> Story:
    """Turn a schema-valid draft into a story that renders and fits the duration."""
    scenes = _merge_overflow(list(draft.scenes), max(1, min(MAX_SCENES, target_s)))
    durations = fit_durations([s.duration_s for s in scenes], target_s)
    return Story(
        title=clean_text(draft.title) or "Untitled story",
        logline=clean_text(draft.logline),
        narrative=clean_text(draft.narrative),
        scenes=tuple(
            Scene(
                number=i + 1,
                duration_s=d,
                visuals=clean_text(s.visuals),
                voiceover=clean_text(s.voiceover),
            )
            for i, (s, d) in enumerate(zip(scenes, durations, strict=False))
        ),
    )
