"""Settings: built once at start from the environment (or ``.env``) and passed down.

Nothing else reads ``os.environ``. Secrets are ``SecretStr`` so they never print by accident.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.pipeline.approvals import ApprovalPolicy, parse_policy

WHERE_TO_GET = {
    "SLACK_BOT_TOKEN": "Slack app → OAuth & Permissions → Bot User OAuth Token (xoxb-…)",
    "SLACK_APP_TOKEN": "Slack app → Basic Information → App-Level Tokens, scope connections:write "
    "(xapp-…); leave unset for HTTP mode",
    "SLACK_SIGNING_SECRET": "Slack app → Basic Information → App Credentials → Signing Secret "
    "(required in HTTP mode)",
    "OPENAI_API_KEY": "your LLM provider's API key (any non-empty value for local servers)",
    "OPENAI_BASE_URL": "base URL of any OpenAI-compatible endpoint, e.g. https://api.openai.com/v1",
    "REDIS_URL": "redis://host:6379/0, redis+sentinel://host:26379/mymaster/0 or "
    "redis+cluster://host:7000 (unset: `storyloop run` starts a local redis-server)",
    "SLACK_CLIENT_ID": "Slack app → Basic Information → App Credentials (OAuth distribution)",
    "SLACK_API_URL": "Slack Web API base, e.g. https://slack-gov.com/api/ for GovSlack",
    "STORYLOOP_MODEL": "the model name your endpoint serves",
}


class SettingsError(Exception):
    """Configuration is missing or invalid; ``str()`` is the message for the admin."""


class _SlackCredentials(BaseSettings):
    """The bot token and OAuth credentials alone, read leniently (see ``load_settings``)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )
    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_client_id: str | None = Field(default=None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: str | None = Field(default=None, validation_alias="SLACK_CLIENT_SECRET")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Required unless OAuth distribution is on (then every workspace's token is in Redis).
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    # OAuth distribution (HTTP mode): /slack/install and /slack/oauth_redirect, one
    # installation per workspace (docs/INSTALL.md). Both set: on.
    slack_client_id: str | None = Field(default=None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_CLIENT_SECRET"
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    openai_api_key: SecretStr = Field(validation_alias="OPENAI_API_KEY")
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL"
    )
    model: str = Field(
        default="gpt-4o-mini", validation_alias=AliasChoices("STORYLOOP_MODEL", "OPENAI_MODEL")
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # A redis:// URL that names a node of a Redis Cluster (same as redis+cluster://).
    redis_cluster: bool = Field(default=False, validation_alias="REDIS_CLUSTER")
    port: int = Field(default=3000, ge=1, le=65535, validation_alias="PORT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    # text: one readable line per record; json: one JSON object per line (bot/logs.py).
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="LOG_FORMAT")
    # Socket Mode serves /healthz, /readyz and /metrics on this port (HTTP mode: on PORT); 0: off.
    metrics_port: int = Field(
        default=9100, ge=0, le=65535, validation_alias="STORYLOOP_METRICS_PORT"
    )
    data_dir: str = Field(default="data", validation_alias="STORYLOOP_DATA_DIR")

    # Tunables (sane defaults; environment can override).
    workers: int = Field(default=128, ge=1, le=1024, validation_alias="STORYLOOP_WORKERS")
    lease_s: float = Field(default=30.0, gt=0, validation_alias="STORYLOOP_LEASE_SECONDS")
    llm_timeout_s: float = Field(default=60.0, gt=0, validation_alias="STORYLOOP_LLM_TIMEOUT")
    llm_attempts: int = Field(default=3, ge=1, le=10, validation_alias="STORYLOOP_LLM_ATTEMPTS")
    llm_backoff_s: float = Field(default=1.0, ge=0, validation_alias="STORYLOOP_LLM_BACKOFF")
    max_deliveries: int = Field(default=5, ge=1, validation_alias="STORYLOOP_MAX_DELIVERIES")
    # Retention: a session and every key of it expire this long after its last activity.
    session_ttl_days: int = Field(default=90, ge=1, validation_alias="STORYLOOP_SESSION_TTL_DAYS")
    progress_interval_s: float = Field(
        default=2.0, gt=0, validation_alias="STORYLOOP_PROGRESS_INTERVAL"
    )
    # The workspace default approval rule (the start modal can choose another per session):
    # owner | anyone | quorum:N | named:U1,U2 | group:S1 — see bot/pipeline/approvals.py.
    approval: str = Field(default="owner", validation_alias="STORYLOOP_APPROVAL")
    socket_connect_timeout_s: float = Field(
        default=20.0, gt=0, validation_alias="STORYLOOP_SOCKET_CONNECT_TIMEOUT"
    )
    # Where a replica runs its job worker: its own process (default: token handling can't hold
    # the listener's GIL), a thread of the listener's process, or the listener's own loop.
    worker_mode: Literal["process", "thread", "inline"] = Field(
        default="process", validation_alias="STORYLOOP_WORKER_MODE"
    )
    # The event loop of the listener and worker processes (bot/runloop.py): uvloop (default; less
    # CPU per request, frame and streamed chunk) or the standard library's asyncio.
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", validation_alias="STORYLOOP_EVENT_LOOP"
    )
    # The worker process's niceness (added to the listener's): on a busy machine the listener
    # (acks, first visible changes) would get the CPU first and the workers' streams, renders
    # and uploads the rest. Off by default: at 500 sessions the bench showed no difference in
    # the listener's tails with 10 (bench/README.md, issue 12 round 3), and a niced worker
    # starves behind anything else on a shared machine. Only the worker process.
    worker_nice: int = Field(default=0, ge=0, le=19, validation_alias="STORYLOOP_WORKER_NICE")
    # The listener shows a trigger's first change itself right after the ack (bot/jobs/eager.py).
    eager: bool = Field(default=True, validation_alias="STORYLOOP_EAGER")
    # Thread answers stream into Slack (chat.startStream …) where the workspace allows it; off:
    # they are shown by throttled edits of one message (bot/slack/streams.py).
    stream_answers: bool = Field(default=True, validation_alias="STORYLOOP_STREAM_ANSWERS")
    crash_point: str | None = Field(default=None, validation_alias="STORYLOOP_CRASH_POINT")
    # App Home (bot/jobs/home.py): how often the worker looks for Homes to publish, and how long
    # a Home waits after its first change so that a burst of changes is one views.publish.
    home_interval_s: float = Field(default=1.0, gt=0, validation_alias="STORYLOOP_HOME_INTERVAL")
    home_settle_s: float = Field(default=2.0, ge=0, validation_alias="STORYLOOP_HOME_SETTLE")
    # Slack's rate limits as one budget shared by every replica, in Redis (storage/budget.py):
    # each channel's posts and edits (~1/s, small burst) and the workspace's chat.update (Tier
    # 3, ~50/min). Progress edits are made only while a bucket holds more than its reserve;
    # results wait their turn, at most budget_max_wait_s. Off: only Slack's 429s pace us.
    slack_budget: bool = Field(default=True, validation_alias="STORYLOOP_SLACK_BUDGET")
    channel_per_s: float = Field(default=1.0, gt=0, validation_alias="STORYLOOP_CHANNEL_PER_S")
    channel_burst: float = Field(default=5.0, ge=1, validation_alias="STORYLOOP_CHANNEL_BURST")
    channel_reserve: float = Field(default=1.0, ge=0, validation_alias="STORYLOOP_CHANNEL_RESERVE")
    updates_per_min: float = Field(
        default=50.0, gt=0, validation_alias="STORYLOOP_UPDATES_PER_MINUTE"
    )
    update_burst: float = Field(default=10.0, ge=1, validation_alias="STORYLOOP_UPDATE_BURST")
    update_reserve: float = Field(default=5.0, ge=0, validation_alias="STORYLOOP_UPDATE_RESERVE")
    budget_max_wait_s: float = Field(
        default=10.0, gt=0, validation_alias="STORYLOOP_BUDGET_MAX_WAIT"
    )

    # Reference images: the OpenAI Images API (or any server that speaks it). Base URL and key
    # default to the LLM's. gpt-image-1, its mini and DALL·E are shut down.
    image_base_url: str | None = Field(default=None, validation_alias="STORYLOOP_IMAGE_BASE_URL")
    image_api_key: SecretStr | None = Field(
        default=None, validation_alias="STORYLOOP_IMAGE_API_KEY"
    )
    image_model: str = Field(default="gpt-image-2", validation_alias="STORYLOOP_IMAGE_MODEL")
    image_size: str = Field(
        default="1024x1024",
        pattern=r"^(auto|\d{2,4}x\d{2,4})$",
        validation_alias="STORYLOOP_IMAGE_SIZE",
    )
    image_quality: Literal["low", "medium", "high", "auto"] = Field(
        default="medium", validation_alias="STORYLOOP_IMAGE_QUALITY"
    )
    max_images: int = Field(default=4, ge=1, le=10, validation_alias="STORYLOOP_MAX_IMAGES")
    image_timeout_s: float = Field(default=180.0, gt=0, validation_alias="STORYLOOP_IMAGE_TIMEOUT")
    # Prices (USD). Estimates per image by quality (1024², gpt-image-2); actual cost from the
    # response's token usage. Override for other models or negotiated prices.
    image_estimate_usd: dict[str, float] = Field(
        default={"low": 0.006, "medium": 0.05, "high": 0.21, "auto": 0.05},
        validation_alias="STORYLOOP_IMAGE_ESTIMATE_USD",
    )
    image_text_input_per_m_usd: float = Field(
        default=5.0, ge=0, validation_alias="STORYLOOP_IMAGE_TEXT_INPUT_PER_M_USD"
    )
    image_image_input_per_m_usd: float = Field(
        default=8.0, ge=0, validation_alias="STORYLOOP_IMAGE_IMAGE_INPUT_PER_M_USD"
    )
    image_output_per_m_usd: float = Field(
        default=30.0, ge=0, validation_alias="STORYLOOP_IMAGE_OUTPUT_PER_M_USD"
    )
    # Video: any server speaking the OpenAI-style video-jobs contract (POST /v1/videos, …), e.g.
    # a LiteLLM proxy in front of Veo or Runway. Base URL and key default to the LLM's.
    video_base_url: str | None = Field(default=None, validation_alias="STORYLOOP_VIDEO_BASE_URL")
    video_api_key: SecretStr | None = Field(
        default=None, validation_alias="STORYLOOP_VIDEO_API_KEY"
    )
    video_model: str = Field(default="veo-3.1", validation_alias="STORYLOOP_VIDEO_MODEL")
    video_size: str = Field(
        default="1280x720", pattern=r"^\d{2,4}x\d{2,4}$", validation_alias="STORYLOOP_VIDEO_SIZE"
    )
    video_seconds: str = Field(
        default="4,8,12", pattern=r"^\d+(,\d+)*$", validation_alias="STORYLOOP_VIDEO_SECONDS"
    )
    video_price_per_s_usd: float = Field(
        default=0.15, ge=0, validation_alias="STORYLOOP_VIDEO_PRICE_PER_S_USD"
    )
    video_concurrency: int = Field(
        default=3, ge=1, le=16, validation_alias="STORYLOOP_VIDEO_CONCURRENCY"
    )
    video_poll_max_s: float = Field(default=20.0, gt=0, validation_alias="STORYLOOP_VIDEO_POLL_MAX")
    video_timeout_s: float = Field(default=1800.0, gt=0, validation_alias="STORYLOOP_VIDEO_TIMEOUT")
    voiceover: bool = Field(default=True, validation_alias="STORYLOOP_VOICEOVER")
    speech_model: str = Field(default="gpt-4o-mini-tts", validation_alias="STORYLOOP_SPEECH_MODEL")
    speech_voice: str = Field(default="alloy", validation_alias="STORYLOOP_SPEECH_VOICE")
    speech_per_1k_chars_usd: float = Field(
        default=0.015, ge=0, validation_alias="STORYLOOP_SPEECH_PER_1K_CHARS_USD"
    )
    # A workspace's spending on paid generation per UTC day; unset = no limit.
    daily_spend_limit_usd: float | None = Field(
        default=None, gt=0, validation_alias="STORYLOOP_DAILY_SPEND_LIMIT_USD"
    )

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def oauth(self) -> bool:
        """Distributed to many workspaces: OAuth install flow, a token per workspace."""
        return bool(self.slack_client_id and self.slack_client_secret) and not self.socket_mode

    @property
    def bot_token(self) -> str | None:
        """The one bot token (single-workspace mode); None with OAuth."""
        return self.slack_bot_token.get_secret_value() if self.slack_bot_token else None

    @field_validator("approval")
    @classmethod
    def _approval_rule(cls, value: str) -> str:
        if parse_policy(value) is None:
            raise ValueError(
                "must be owner, anyone, quorum:N (2-10), named:U…,U… or group:S… "
                f"(got {value[:40]!r})"
            )
        return value.strip()

    @property
    def approval_policy(self) -> ApprovalPolicy:
        """The workspace default approval rule, parsed (validated at start)."""
        policy = parse_policy(self.approval)
        assert policy is not None
        return policy

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator(
        "image_base_url",
        "image_api_key",
        "video_base_url",
        "video_api_key",
        "daily_spend_limit_usd",
        "crash_point",
        "slack_bot_token",
        "slack_client_id",
        "slack_client_secret",
        mode="before",
    )
    @classmethod
    def _blank_means_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def images_url(self) -> str:
        return self.image_base_url or self.openai_base_url

    @property
    def video_url(self) -> str:
        return self.video_base_url or self.openai_base_url

    @property
    def video_key(self) -> str:
        return (self.video_api_key or self.openai_api_key).get_secret_value()

    @property
    def video_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({int(x) for x in self.video_seconds.split(",") if int(x) > 0}))

    @property
    def images_key(self) -> str:
        key = self.image_api_key or self.openai_api_key
        return key.get_secret_value()

    @field_validator("openai_api_key")
    @classmethod
    def _required(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be blank (any non-empty value for servers without keys)")
        return value

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        values = [self.slack_bot_token, self.slack_app_token, self.slack_signing_secret]
        values.append(self.slack_client_secret)
        values.append(self.openai_api_key)
        values.append(self.image_api_key)
        values.append(self.video_api_key)
        return [v.get_secret_value() for v in values if v is not None]


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` or raise ``SettingsError`` listing everything that is wrong."""
    # Is there a bot token, or OAuth instead? Asked of the same sources before the full check,
    # so a missing token is listed with every other problem, as when it was always required.
    credentials = _SlackCredentials(**overrides)  # type: ignore[arg-type]
    problems: list[str] = []
    if not credentials.slack_bot_token and not (
        credentials.slack_client_id and credentials.slack_client_secret
    ):
        problems.append(
            "  - SLACK_BOT_TOKEN is missing\n      get it from: " + WHERE_TO_GET["SLACK_BOT_TOKEN"]
        )
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            what = "is missing" if err["type"] == "missing" else f"is invalid: {err['msg']}"
            hint = WHERE_TO_GET.get(name, "")
            problems.append(f"  - {name} {what}" + (f"\n      get it from: {hint}" if hint else ""))
        raise SettingsError("Storyloop can't start:\n" + "\n".join(problems)) from None
    if problems:
        raise SettingsError("Storyloop can't start:\n" + "\n".join(problems))
    if not settings.socket_mode and settings.slack_signing_secret is None:
        raise SettingsError(
            "Storyloop can't start:\n  - SLACK_SIGNING_SECRET is missing (HTTP mode, because "
            "SLACK_APP_TOKEN is unset)\n      get it from: "
            + WHERE_TO_GET["SLACK_SIGNING_SECRET"]
            + "\n      or set SLACK_APP_TOKEN to run in Socket Mode: "
            + WHERE_TO_GET["SLACK_APP_TOKEN"]
        )
    return settings
