"""What the LLM returns for the reference-image and storyboard stages, and how drafts become specs.

The schemas double as the JSON schema sent to the endpoint (structured outputs). The normalisers
make any schema-valid draft safe to render and true to its constraints: text is cleaned and
clipped, lists are capped, numbers are renumbered and clamped, image kinds are mapped, image
names are unique, shot references name known images only, and shot durations fit the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from bot.pipeline.artifacts import ImageKind, ImageSpec, Shot
from bot.pipeline.drafts import fit_durations
from bot.pipeline.models import Story
from bot.pipeline.request import clean_text

MAX_IMAGE_NAME = 80
MAX_IMAGE_ROLE = 300
MAX_IMAGE_PROMPT = 4000
MAX_SHOTS = 120
MAX_SHOT_TEXT = 1200
MAX_SHOT_LABEL = 120  # shot_type, camera
MAX_REFERENCES_READ = 32  # per shot: more is noise
MAX_SHOT_SECONDS = 86_400  # a day: keeps absurd durations from skewing the rescale arithmetic


class ImageDraft(BaseModel):
    """One planned reference image as the LLM proposes it."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Short unique name, used to refer to the image in shots.")
    kind: str = Field(description="One of: character, location, prop, style.")
    role: str = Field(description="Its role in the story, in one sentence.")
    prompt: str = Field(description="The image-generation prompt that makes it.")


class ImagePlanDraft(BaseModel):
    """The reference image set as requested from the LLM (schema name: ``image_plan``)."""

    model_config = ConfigDict(extra="ignore")

    images: list[ImageDraft] = Field(min_length=1)
    summary_of_changes: str = Field(
        default="", description="One sentence on what changed from the previous version."
    )


class ImageRedoDraft(BaseModel):
    """One image's spec rewritten (schema name: ``image_redo``)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="The image's name; keep it unless asked to change it.")
    kind: str = Field(description="One of: character, location, prop, style.")
    role: str = Field(description="Its role in the story, in one sentence.")
    prompt: str = Field(description="The image-generation prompt that makes it.")
    summary_of_changes: str = Field(
        default="", description="One sentence on what changed in this image."
    )


class ShotDraft(BaseModel):
    """One shot of the storyboard as the LLM proposes it."""

    model_config = ConfigDict(extra="ignore")

    scene: int = Field(description="Number of the story scene this shot belongs to.")
    duration_s: int = Field(description="Seconds on screen; all shots add up to the target.")
    shot_type: str = Field(description="Wide, medium, close-up, insert, …")
    camera: str = Field(description="Camera move or framing: static, pan, push-in, handheld, …")
    action: str = Field(description="What we see.")
    audio: str = Field(default="", description="Voice-over or dialogue; empty string for none.")
    references: list[str] = Field(
        default_factory=list,
        description="Exact names of the reference images this shot uses.",
    )


class StoryboardDraft(BaseModel):
    """The shot list as requested from the LLM (schema name: ``storyboard``)."""

    model_config = ConfigDict(extra="ignore")

    shots: list[ShotDraft] = Field(min_length=1)
    summary_of_changes: str = Field(
        default="", description="One sentence on what changed from the previous version."
    )


STAGE_SCHEMA_NAMES: dict[type[BaseModel], str] = {
    ImagePlanDraft: "image_plan",
    ImageRedoDraft: "image_redo",
    StoryboardDraft: "storyboard",
}


# --- text -----------------------------------------------------------------------------------


def _clean(text: str, limit: int) -> tuple[str, bool]:
    """``clean_text`` of a prefix long enough to fill ``limit`` (huge inputs stay cheap), and
    whether the text was cut."""
    size = 4 * limit + 64
    return clean_text(text[:size]), len(text) > size


def _clip(text: str, limit: int, cut: bool = False) -> str:
    return text if len(text) <= limit and not cut else text[: limit - 1].rstrip() + "…"


def _text(text: str, limit: int) -> str:
    """Cleaned (no control or format characters), trimmed and clipped; newlines kept."""
    cleaned, cut = _clean(text, limit)
    return _clip(cleaned, limit, cut)


def _line(text: str, limit: int) -> str:
    """Cleaned, on one line with single spaces, and clipped."""
    cleaned, cut = _clean(text, limit)
    return _clip(" ".join(cleaned.split()), limit, cut)


def _key(name: str) -> str:
    """How names compare: case-insensitively, whitespace-insensitively."""
    return " ".join(clean_text(name).split()).casefold()


# --- images ---------------------------------------------------------------------------------

_KIND_WORDS: dict[str, ImageKind] = {
    "character": ImageKind.CHARACTER,
    "person": ImageKind.CHARACTER,
    "people": ImageKind.CHARACTER,
    "hero": ImageKind.CHARACTER,
    "protagonist": ImageKind.CHARACTER,
    "creature": ImageKind.CHARACTER,
    "animal": ImageKind.CHARACTER,
    "mascot": ImageKind.CHARACTER,
    "location": ImageKind.LOCATION,
    "place": ImageKind.LOCATION,
    "setting": ImageKind.LOCATION,
    "environment": ImageKind.LOCATION,
    "background": ImageKind.LOCATION,
    "scene": ImageKind.LOCATION,
    "set": ImageKind.LOCATION,
    "prop": ImageKind.PROP,
    "object": ImageKind.PROP,
    "product": ImageKind.PROP,
    "item": ImageKind.PROP,
    "style": ImageKind.STYLE,
    "style frame": ImageKind.STYLE,
    "styleframe": ImageKind.STYLE,
    "look": ImageKind.STYLE,
    "mood": ImageKind.STYLE,
    "moodboard": ImageKind.STYLE,
    "mood board": ImageKind.STYLE,
}


def image_kind(raw: str) -> ImageKind:
    """The kind the LLM meant: exact values, plurals and a few synonyms; anything else is a prop."""
    if len(raw) > 64:
        return ImageKind.PROP
    word = " ".join(clean_text(raw).replace("_", " ").replace("-", " ").split()).casefold()
    if word in _KIND_WORDS:
        return _KIND_WORDS[word]
    if word.endswith("s") and word[:-1] in _KIND_WORDS:
        return _KIND_WORDS[word[:-1]]
    return ImageKind.PROP


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``… — the first not in ``taken`` (compared by key)."""
    if _key(name) not in taken:
        return name
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = _clip(name, MAX_IMAGE_NAME - len(suffix)).rstrip() + suffix
        if _key(candidate) not in taken:
            return candidate
        n += 1


def _spec(
    index: int, name: str, kind: ImageKind, role: str, prompt: str, *, taken: set[str]
) -> ImageSpec:
    clean_name = _line(name, MAX_IMAGE_NAME) or f"Image {index}"
    clean_name = _unique_name(clean_name, taken)
    clean_role = _line(role, MAX_IMAGE_ROLE)
    clean_prompt = _text(prompt, MAX_IMAGE_PROMPT)
    if not clean_prompt:  # the image API needs something to draw
        clean_prompt = _text(f"{clean_name}. {clean_role}".strip(), MAX_IMAGE_PROMPT)
    return ImageSpec(index=index, name=clean_name, kind=kind, role=clean_role, prompt=clean_prompt)


def to_image_specs(draft: ImagePlanDraft, *, max_images: int) -> tuple[ImageSpec, ...]:
    """The planned set: at most ``max_images`` (at least one), indexed 1..k in the LLM's order.

    Names, roles and prompts are cleaned and clipped; empty names become "Image k"; repeated
    names (case-insensitively) get a " (2)" suffix; unknown kinds are props; only the first style
    frame is kept (later ones are dropped, not counted against the cap).
    """
    limit = max(1, max_images)
    specs: list[ImageSpec] = []
    taken: set[str] = set()
    has_style = False
    for image in draft.images:
        if len(specs) >= limit:
            break
        kind = image_kind(image.kind)
        if kind is ImageKind.STYLE:
            if has_style:
                continue
            has_style = True
        spec = _spec(len(specs) + 1, image.name, kind, image.role, image.prompt, taken=taken)
        taken.add(_key(spec.name))
        specs.append(spec)
    return tuple(specs)


def to_redo_spec(
    draft: ImageRedoDraft, *, index: int, others: Iterable[ImageSpec] = ()
) -> ImageSpec:
    """The rewritten spec of image ``index``, cleaned and clipped like a planned one.

    ``others`` (the rest of the set, optional) keeps the set's invariants: the name is made
    unique among them, and a second style frame becomes a prop.
    """
    rest = [o for o in others if o.index != index]
    taken = {_key(o.name) for o in rest}
    kind = image_kind(draft.kind)
    if kind is ImageKind.STYLE and any(o.kind is ImageKind.STYLE for o in rest):
        kind = ImageKind.PROP
    return _spec(index, draft.name, kind, draft.role, draft.prompt, taken=taken)


# --- storyboard -----------------------------------------------------------------------------


def _references(raw: Sequence[str], known: dict[str, str]) -> tuple[str, ...]:
    found: list[str] = []
    for ref in raw[:MAX_REFERENCES_READ]:
        name = known.get(_key(ref))
        if name is not None and name not in found:
            found.append(name)
            if len(found) == len(known):
                break
    return tuple(found)


def to_shots(
    draft: StoryboardDraft, *, story: Story, image_names: Sequence[str], target_s: int
) -> tuple[Shot, ...]:
    """The shot list: valid, in scene order, numbered 1..k, fitting ``target_s`` within 10 %.

    At most ``MAX_SHOTS`` (the LLM's first ones); scene numbers clamped to the story's scenes;
    shots sorted by scene (stable: the LLM's order within a scene); durations at least one second
    and rescaled when their sum misses the target by more than 10 % (``fit_durations``, which may
    also drop trailing shots when there are more shots than seconds); references kept only when
    they name a known image (case-insensitively), given as its exact name, without repeats.
    """
    target = max(1, target_s)
    last_scene = max(1, len(story.scenes))
    known: dict[str, str] = {}
    for name in image_names:
        known.setdefault(_key(name), name)
    known.pop("", None)
    drafts = sorted(draft.shots[:MAX_SHOTS], key=lambda s: min(max(s.scene, 1), last_scene))
    durations = fit_durations([min(max(s.duration_s, 1), MAX_SHOT_SECONDS) for s in drafts], target)
    return tuple(
        Shot(
            number=i,
            scene=min(max(s.scene, 1), last_scene),
            duration_s=d,
            shot_type=_line(s.shot_type, MAX_SHOT_LABEL),
            camera=_line(s.camera, MAX_SHOT_LABEL),
            action=_text(s.action, MAX_SHOT_TEXT),
            audio=_text(s.audio, MAX_SHOT_TEXT),
            references=_references(s.references, known),
        )
        for i, (s, d) in enumerate(zip(drafts, durations, strict=False), start=1)
    )
