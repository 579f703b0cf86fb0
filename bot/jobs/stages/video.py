"""Stage 4: video — a plan with its cost is confirmed first; then clips are rendered by the
provider (each a paid item, polled for minutes), joined with the voice-over, and reviewed.

Paid once: a clip's state is written before each step (``submitted`` with the time it was
asked for, then with the provider's job id as soon as it is known, ``ready``, ``fetched``,
``uploaded``). A replay polls the recorded job instead of creating another; a crash between the
provider accepting a job and its id being recorded is closed by adopting the provider's newest
job with this clip's prompt, asked for after that time; if none is found the clip is reported
as interrupted and remade only if a person says so. Only reads (status, content) are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.model import Deferred, Job
from bot.jobs.stages.base import (
    approved_images,
    approved_story,
    approved_storyboard,
    fail_stage,
    review_state,
    show_message,
    write_spool,
)
from bot.media import ffmpeg
from bot.media.speech import SpeechError
from bot.media.video import VideoError, job_failure
from bot.pipeline import review as say
from bot.pipeline.artifacts import (
    ClipPlan,
    ClipResult,
    ItemState,
    PaidItem,
    VideoPlan,
    VideoVersion,
)
from bot.pipeline.intent import wants_regenerate
from bot.pipeline.models import Session, Stage, Status, TurnRole
from bot.pipeline.transitions import Op
from bot.pipeline.video_plan import plan_video, voiceover_text
from bot.slack import blocks
from bot.slack.gateway import SlackDeliveryError
from bot.slack.uploads import UploadRefused
from storage.repository import Writes

log = logging.getLogger(__name__)
STAGE = Stage.VIDEO
PLANS = "video_plan"  # where plans are kept beside the versions
PlanState = Literal["confirm", "confirmed", "cancelled", "superseded"]
ADOPT_SKEW_S = 60.0


class Cancelled(Exception):
    """A Cancel click was recorded while the render ran."""

    def __init__(self, by: str, job: str) -> None:
        super().__init__(by)
        self.by = by
        self.job = job


@dataclass
class _Render:
    n: int
    plan: VideoPlan
    progress: dict[int, tuple[str, int]]


class VideoStage:
    stage = STAGE

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    # --- the port ------------------------------------------------------------------------
    async def generate(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        if op is Op.RENDER:
            await self._render(job, s)
        else:
            await self._plan(job, s, op, item)

    async def show(self, job: Job, s: Session, number: int) -> Session:
        version = await self.version(s, number)
        if version is None:
            return s
        plan = await self.plan(s, version.plan)
        if plan is None:
            return s
        approval = s.approval(STAGE)
        msg = blocks.video_review(
            s,
            version,
            plan,
            state=review_state(s, STAGE, number),
            approver=approval.user_id if approval else None,
        )
        await show_message(self.ctx, job, s, f"{STAGE}:v{number}", msg)
        return s

    async def step(self, job: Job, s: Session, step: str) -> Session:
        """The video's own delivery steps: ``plan:{n}`` (the plan message in its state) and
        ``cancelled:{job}`` (who cancelled, what was made and spent)."""
        kind, _, rest = step.partition(":")
        if kind == "plan" and rest.isdigit():
            await self._show_plan(job, s, int(rest))
        elif kind == "cancelled":
            items = await self.ctx.repo.items(s)
            made = sum(1 for i in items.values() if i.state is ItemState.FETCHED)
            plan = await self.plan(s, s.plan)
            await show_message(
                self.ctx,
                job,
                s,
                step,
                blocks.video_cancelled(
                    s,
                    s.cancelled_by or s.owner_id,
                    made=made,
                    total=len(plan.clips) if plan else 0,
                    spent_usd=s.spent_usd,
                ),
            )
        return s

    async def describe(self, s: Session) -> str:
        plan = await self.plan(s, s.plan) if s.plan else None
        version = await self.version(s, s.version) if s.version else None
        lines = []
        if plan is not None:
            lines += [
                f"Clip {c.index} (scene {c.scene}, {c.seconds} s): {c.prompt}" for c in plan.clips
            ]
        if version is not None:
            lines.append(f"Video v{version.number}: {version.duration_s:.0f} s")
        return "\n".join(lines) or "(no video yet)"

    async def items(self, s: Session) -> tuple[int, tuple[int, ...]]:
        story = await approved_story(self.ctx, s)
        return len(story.scenes), ()

    async def plan(self, s: Session, number: int) -> VideoPlan | None:
        return await self.ctx.repo.artifact(s, PLANS, number, VideoPlan)

    async def version(self, s: Session, number: int) -> VideoVersion | None:
        return await self.ctx.repo.artifact(s, STAGE, number, VideoVersion)

    # --- planning: free, and nothing is spent until someone confirms -----------------------
    async def _plan(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        ctx = self.ctx
        settings = ctx.settings
        n = s.plan + 1
        current = await self.plan(s, s.plan) if op is Op.REDO and s.plan else None
        plan = plan_video(
            await approved_story(self.ctx, s),
            await approved_storyboard(self.ctx, s),
            await approved_images(self.ctx, s),
            number=n,
            supported=settings.video_lengths,
            model=settings.video_model,
            size=settings.video_size,
            price_per_s=settings.video_price_per_s_usd,
            voiceover=settings.voiceover,
            speech_per_1k_chars=settings.speech_per_1k_chars_usd,
            created_at=ctx.clock(),
            redo_scene=item if op is Op.REDO else None,
            current=current,
        )
        # Replies that asked for a new render ("try again") are answered by this plan, the way
        # a reply asking for a new story is answered by the new version: marked answered, and
        # named on the plan. A reply with anything else to say keeps its LLM answer.
        history = await ctx.repo.history(s)
        asked = [t for t in history[s.answered_until :] if t.role is TurnRole.USER]
        answers = bool(asked) and all(wants_regenerate(t.text) for t in asked)
        if answers:
            plan = plan.model_copy(update={"feedback_ts": tuple(t.ts for t in asked)})
        steps = [f"plan:{n}", "card"]
        if n > 1:
            steps.append(f"plan:{n - 1}")
        s = await ctx.commit(
            job,
            s,
            status=Status.AWAITING_CONFIRMATION,
            plan=n,
            answered_until=len(history) if answers else s.answered_until,
            estimate_usd=plan.estimate_usd,
            active_job=None,
            active_item=None,
            failure=None,
            failed_op=None,
            failed_item=None,
            writes=Writes()
            .add_artifact(s, PLANS, n, plan.model_dump_json())
            .forget_items(s)  # a failed or cancelled render's clips: the new plan starts anew
            .forget_cancel(s)
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        await deliver(ctx, job, s, steps)

    async def _show_plan(self, job: Job, s: Session, number: int) -> None:
        plan = await self.plan(s, number)
        if plan is None:
            return
        state: PlanState
        if number != s.plan:
            state = "superseded"
        elif s.status is Status.AWAITING_CONFIRMATION:
            state = "confirm"
        elif s.status is Status.CANCELLED and s.version_of(STAGE) < 1:
            state = "cancelled"
        else:
            state = "confirmed"
        await show_message(
            self.ctx,
            job,
            s,
            f"{STAGE}:plan:{number}",
            blocks.video_plan(s, plan, state=state, by=s.cancelled_by),
        )

    # --- rendering -----------------------------------------------------------------------
    async def _render(self, job: Job, s: Session) -> None:
        ctx = self.ctx
        plan = await self.plan(s, s.plan)
        if plan is None:
            await fail_stage(
                ctx, job, s, "The video plan is gone; ask for a new one.", op=Op.GENERATE, item=None
            )
            return
        n = s.version + 1
        run = _Render(n, plan, {c.index: ("queued", 0) for c in plan.clips})
        await self._show_plan(job, s, s.plan)
        await show_message(ctx, job, s, f"{STAGE}:v{n}:progress", self._progress(s, run))
        if job.eager:
            raise Deferred  # confirmed and shown; the paid work is a worker's
        items = await ctx.repo.items(s)
        limit = ctx.settings.daily_spend_limit_usd
        fresh = not any(k.startswith(f"{STAGE}:v{n}:") for k in items)
        if (
            limit is not None
            and fresh
            and await ctx.repo.spent_on(s.team_id, ctx.today()) + plan.estimate_usd > limit
        ):
            await fail_stage(ctx, job, s, say.over_budget(limit), op=Op.GENERATE, item=None)
            return
        ticker = asyncio.create_task(self._tick(job, s, run))
        gate = asyncio.Semaphore(ctx.settings.video_concurrency)
        stopping: list[Cancelled] = []

        async def one(clip: ClipPlan) -> PaidItem:
            async with gate:
                if stopping:
                    # Cancelled while this clip waited for a slot: gather doesn't stop the
                    # others, so without this the slot a cancelled clip freed started a new
                    # paid create after the cancel.
                    raise stopping[0]
                try:
                    field = f"{STAGE}:v{n}:{clip.index}"
                    return await self._clip(job, s, run, clip, items.get(field))
                except Cancelled as exc:
                    stopping.append(exc)
                    raise

        tasks = [asyncio.ensure_future(one(c)) for c in plan.clips]
        try:
            states = await asyncio.gather(*tasks)
        except Cancelled as exc:
            ticker.cancel()
            # The clips still in flight see the cancel at their next poll; none starts anew.
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop(job, s, by=exc.by, cancel_job=exc.job)
            return
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            ticker.cancel()
        failed = [
            (c, st)
            for c, st in zip(plan.clips, states, strict=True)
            if st.state is not ItemState.FETCHED
        ]
        if failed:
            await self._render_failed(job, s, run, failed, states)
            return
        await self._finish(job, s, run, list(states))

    async def _clip(
        self, job: Job, s: Session, run: _Render, clip: ClipPlan, state: PaidItem | None
    ) -> PaidItem:
        field = f"{STAGE}:v{run.n}:{clip.index}"
        spooled = state is not None and state.state is ItemState.FETCHED and state.spool
        if state is not None and spooled and await asyncio.to_thread(Path(str(state.spool)).exists):
            return state
        if state is not None and state.state is ItemState.FAILED:
            return state  # remaking it is a new paid call: a new plan, confirmed again
        if state is None:
            state = await self._create(job, s, field, clip)
            if state.state is ItemState.FAILED:
                return state
        if state.remote_id is None:
            state = await self._adopt(job, s, field, clip, state)
            if state.state is ItemState.FAILED:
                return state
        return await self._poll_and_fetch(job, s, run, field, clip=clip, state=state)

    async def _create(self, job: Job, s: Session, field: str, clip: ClipPlan) -> PaidItem:
        ctx = self.ctx
        reference = await self._reference(s, clip)
        asked = PaidItem(state=ItemState.SUBMITTED, started_at=ctx.clock())
        await ctx.repo.set_item(s, field, asked, fence=job.fence)
        try:
            remote = await ctx.video.create(
                prompt=clip.prompt,
                seconds=clip.seconds,
                size=run_size(ctx),
                input_reference=reference,
            )
        except VideoError as exc:
            if exc.code in ("connection", "timeout"):
                return asked  # it may have been accepted: adopt it below, never ask again
            failed = asked.model_copy(
                update={
                    "state": ItemState.FAILED,
                    "failure": _scene(clip, exc.user_message),
                    "failure_code": exc.code,
                }
            )
            await ctx.repo.set_item(s, field, failed, fence=job.fence)
            return failed
        ctx.crash.reach("video_created")  # the provider accepted it; its id isn't recorded yet
        known = asked.model_copy(update={"remote_id": remote.id})
        await ctx.repo.set_item(s, field, known, fence=job.fence)
        ctx.crash.reach("after_video_id")
        return known

    async def _adopt(
        self, job: Job, s: Session, field: str, clip: ClipPlan, state: PaidItem
    ) -> PaidItem:
        """A create whose answer we never recorded: find the job the provider made for it."""
        ctx = self.ctx
        taken = {i.remote_id for i in (await ctx.repo.items(s)).values() if i.remote_id}
        since = (state.started_at or 0.0) - ADOPT_SKEW_S
        try:
            recent = await ctx.video.recent(limit=100)
        except VideoError:
            recent = []
        for remote in recent:
            if (
                remote.id not in taken
                and remote.prompt == clip.prompt
                and (remote.seconds in (None, str(clip.seconds)))
                and (remote.created_at or 0.0) >= since
            ):
                adopted = state.model_copy(update={"remote_id": remote.id})
                await ctx.repo.set_item(s, field, adopted, fence=job.fence)
                log.info("adopted video job %s for %s", remote.id, field)
                return adopted
        lost = state.model_copy(
            update={
                "state": ItemState.FAILED,
                "failure": _scene(
                    clip,
                    "Storyloop was interrupted while asking for this clip and the provider "
                    "doesn't show it, so it may or may not have been billed. Retry asks again "
                    "(a new paid call).",
                ),
                "failure_code": "interrupted",
            }
        )
        await ctx.repo.set_item(s, field, lost, fence=job.fence)
        return lost

    async def _poll_and_fetch(
        self, job: Job, s: Session, run: _Render, field: str, *, clip: ClipPlan, state: PaidItem
    ) -> PaidItem:
        ctx = self.ctx
        assert state.remote_id is not None
        wait = 1.0
        first = True
        while state.state is not ItemState.READY:
            cancel = await ctx.repo.cancel_requested(s)
            if cancel:
                raise Cancelled(cancel.get("user", ""), cancel.get("job", ""))
            try:
                remote = await ctx.video.get(state.remote_id)
            except VideoError as exc:
                return await self._clip_failed(job, s, field, clip=clip, state=state, exc=exc)
            if first:
                ctx.crash.reach("mid_poll")
                first = False
            run.progress[clip.index] = ("rendering", remote.progress)
            if remote.status == "completed":
                state = state.model_copy(update={"state": ItemState.READY, "progress": 100})
                await ctx.repo.set_item(s, field, state, fence=job.fence)
                break
            if remote.done:
                return await self._clip_failed(
                    job, s, field, clip=clip, state=state, exc=job_failure(remote)
                )
            hint = remote.poll_after_s
            await asyncio.sleep(min(hint if hint else wait, ctx.settings.video_poll_max_s))
            wait = min(wait * 1.5, ctx.settings.video_poll_max_s)
        run.progress[clip.index] = ("downloading", 100)
        remote_id = state.remote_id
        assert remote_id is not None
        try:
            data = await ctx.video.download(remote_id)
        except VideoError as exc:
            # The clip is made and paid for: keep it ready, so Retry downloads it again.
            failed = state.model_copy(
                update={"failure": _scene(clip, exc.user_message), "failure_code": "download"}
            )
            await ctx.repo.set_item(s, field, failed, fence=job.fence)
            return failed
        path = self._spool(s, f"{field}.mp4")
        write_spool(path, data)
        cost = round(clip.seconds * ctx.settings.video_price_per_s_usd, 6)
        fetched = state.model_copy(
            update={
                "state": ItemState.FETCHED,
                "cost_usd": cost,
                "spool": str(path),
                "failure": None,
            }
        )
        # The cost is counted with the item's new state, in one round trip.
        spend = (ctx.today(), f"{s.id}:{field}", cost)
        ctx.metrics.spent("video", cost)  # paid: counted even if the lease is lost now
        await ctx.repo.set_item(s, field, fetched, fence=job.fence, spend=spend)
        run.progress[clip.index] = ("done", 100)
        ctx.crash.reach("after_video_download")
        return fetched

    async def _clip_failed(
        self, job: Job, s: Session, field: str, *, clip: ClipPlan, state: PaidItem, exc: VideoError
    ) -> PaidItem:
        failed = state.model_copy(
            update={
                "state": ItemState.FAILED,
                "failure": _scene(clip, exc.user_message),
                "failure_code": exc.code,
            }
        )
        await self.ctx.repo.set_item(s, field, failed, fence=job.fence)
        return failed

    async def _reference(self, s: Session, clip: ClipPlan) -> bytes | None:
        """The scene's reference image, from Slack, fitted to the clip's size (providers
        require an exact match). Without it the clip is made from the prompt alone."""
        if not clip.reference:
            return None
        images = await approved_images(self.ctx, s)
        found = next((i for i in images.images if i.spec.name == clip.reference), None)
        if found is None or not found.file_id:
            return None
        try:
            data = await self.ctx.uploads.fetch(found.file_id)
            return await ffmpeg.fit_image(data, run_size(self.ctx))
        except (UploadRefused, ffmpeg.FfmpegError) as exc:
            log.warning("no reference image for clip %s: %s", clip.index, exc)
            return None

    # --- the outcome ---------------------------------------------------------------------
    async def _finish(self, job: Job, s: Session, run: _Render, states: list[PaidItem]) -> None:
        ctx = self.ctx
        plan, n = run.plan, run.n
        assert s.thread_ts is not None
        previous = await self.version(s, s.version) if s.version else None
        clips: list[ClipResult] = []
        paths: list[tuple[Path, float]] = []
        try:
            for clip, state in zip(plan.clips, states, strict=True):
                assert state.spool is not None
                path = Path(state.spool)
                file_id = await ctx.uploads.upload_once(
                    s,
                    f"file:{STAGE}:v{n}:{clip.index}",
                    filename=f"video-v{n}-clip{clip.index}-scene{clip.scene}.mp4",
                    data=await asyncio.to_thread(path.read_bytes),
                    title=f"Video v{n} · clip {clip.index} (scene {clip.scene})",
                    thread_ts=s.thread_ts,
                )
                clips.append(
                    ClipResult(
                        index=clip.index,
                        scene=clip.scene,
                        job_id=state.remote_id,
                        file_id=file_id,
                        seconds=clip.seconds,
                        cost_usd=state.cost_usd,
                        made_in=n,
                    )
                )
            full, order = await self._whole(s, plan, previous, clips)
            for result in full:
                paths.append((await self._clip_file(s, result), _used(order, result)))
            voice = await self._voice(job, s, n, plan, previous)
            out = self._spool(s, f"{STAGE}_v{n}_final.mp4")
            story = await approved_story(self.ctx, s)
            length = await ffmpeg.join(
                paths, out, size=plan.size, voiceover=voice, target_s=float(story.total_duration_s)
            )
            final = await ctx.uploads.upload_once(
                s,
                f"file:{STAGE}:v{n}",
                filename=f"video-v{n}.mp4",
                data=await asyncio.to_thread(out.read_bytes),
                title=f"Video v{n}",
                thread_ts=s.thread_ts,
            )
        except UploadRefused as exc:
            await self._keep_failed(job, s, run, exc.user_message)
            return
        except (ffmpeg.FfmpegError, SpeechError) as exc:
            await self._keep_failed(job, s, run, exc.user_message)
            return
        ctx.crash.reach("after_video_upload")
        cost = round(sum(c.cost_usd for c in clips), 6)
        history = await ctx.repo.history(s)
        version = VideoVersion(
            number=n,
            plan=plan.number,
            clips=tuple(full),
            file_id=final,
            duration_s=round(length, 2),
            voiceover=voice is not None,
            cost_usd=cost,
            feedback_ts=tuple(
                t.ts for t in history[s.incorporated_until :] if t.role is TurnRole.USER
            ),
            redo_of=plan.redo_of,
            created_at=ctx.clock(),
        )
        steps = [f"progress:{STAGE}:{n}", f"review:{STAGE}:{n}", "card"]
        if n > 1:
            steps.insert(2, f"review:{STAGE}:{n - 1}")
        s = await ctx.commit(
            job,
            s,
            version=n,
            status=Status.AWAITING_REVIEW,
            spent_usd=round(s.spent_usd + cost, 6),
            estimate_usd=None,
            incorporated_until=len(history),
            active_job=None,
            active_item=None,
            failure=None,
            failed_op=None,
            failed_item=None,
            writes=Writes()
            .add_artifact(s, STAGE, n, version.model_dump_json())
            .forget_items(s)
            .forget_cancel(s)
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        ctx.crash.reach("after_commit")
        self._clear(s)
        await deliver(ctx, job, s, steps)

    async def _whole(
        self,
        s: Session,
        plan: VideoPlan,
        previous: VideoVersion | None,
        made: list[ClipResult],
    ) -> tuple[list[ClipResult], dict[int, int]]:
        """Every clip of the video: the ones just made, and (a Redo) the rest as they were."""
        full_plan = plan
        if plan.redo_of is not None and previous is not None:
            older = await self.plan(s, previous.plan)
            if older is not None:
                full_plan = older
            by_index = {c.index: c for c in previous.clips}
            by_index.update({c.index: c for c in made})
            ordered = [by_index[c.index] for c in full_plan.clips if c.index in by_index]
        else:
            ordered = made
        used = {c.index: c.scene_s for c in full_plan.clips}
        return ordered, used

    async def _clip_file(self, s: Session, clip: ClipResult) -> Path:
        """A clip's bytes for the join: from the spool, or (a clip kept from an earlier
        version, or another replica's) back from Slack."""
        path = self._spool(s, f"{STAGE}:v{clip.made_in}:{clip.index}.mp4")
        if path.exists():
            return path
        if not clip.file_id:
            raise UploadRefused("file_not_found")
        write_spool(path, await self.ctx.uploads.fetch(clip.file_id))
        return path

    async def _voice(
        self, job: Job, s: Session, n: int, plan: VideoPlan, previous: VideoVersion | None
    ) -> Path | None:
        """The voice-over: a paid item too, made once per video (a Redo keeps the last one)."""
        if not plan.voiceover:
            return None
        ctx = self.ctx
        assert s.thread_ts is not None
        if plan.redo_of is not None and previous is not None:
            kept = await ctx.repo.message_ts(s, f"file:{STAGE}:v{previous.number}:voice")
            if kept:
                path = self._spool(s, f"{STAGE}_v{n}_voice.mp3")
                write_spool(path, await ctx.uploads.fetch(kept))
                await ctx.repo.record_message(s, f"file:{STAGE}:v{n}:voice", kept)
                return path
        field = f"{STAGE}:v{n}:voice"
        state = (await ctx.repo.items(s)).get(field)
        path = self._spool(s, f"{STAGE}_v{n}_voice.mp3")
        if state is None or (state.state is ItemState.FETCHED and not path.exists()):
            text = voiceover_text(await approved_story(self.ctx, s))
            if not text:
                return None
            await ctx.repo.set_item(s, field, PaidItem(state=ItemState.SUBMITTED), fence=job.fence)
            audio = await ctx.speech.speak(text)
            write_spool(path, audio)
            state = PaidItem(state=ItemState.FETCHED, spool=str(path))
            await ctx.repo.set_item(s, field, state, fence=job.fence)
        elif state.state is ItemState.SUBMITTED:
            return None  # interrupted mid-call: the video goes without (said on the review)
        await ctx.uploads.upload_once(
            s,
            f"file:{STAGE}:v{n}:voice",
            filename=f"voiceover-v{n}.mp3",
            data=await asyncio.to_thread(path.read_bytes),
            title=f"Voice-over v{n}",
            thread_ts=s.thread_ts,
        )
        return path

    async def _render_failed(
        self,
        job: Job,
        s: Session,
        run: _Render,
        failed: list[tuple[ClipPlan, PaidItem]],
        states: list[PaidItem],
    ) -> None:
        reasons = " ".join(st.failure or _scene(c, "It failed.") for c, st in failed)
        # Only downloads failed: Retry goes on with the jobs already paid for. Otherwise a clip
        # must be made again — a new paid call, so Retry offers a new plan to confirm.
        resumable = all(st.state is ItemState.READY for _c, st in failed)
        await self._keep_failed(job, s, run, reasons, resumable=resumable)

    async def _keep_failed(
        self, job: Job, s: Session, run: _Render, reason: str, *, resumable: bool = True
    ) -> None:
        """The render didn't finish: say why with Retry. Its clips stay recorded, so Retry
        goes on with the jobs already paid for (downloading again, never generating again)."""
        ctx = self.ctx
        steps = [f"progress:{STAGE}:{run.n}", f"failure:{STAGE}", "card"]
        s = await ctx.commit(
            job,
            s,
            status=Status.FAILED,
            failure=reason[:1500],
            failed_op=Op.RENDER.value if resumable else Op.GENERATE.value,
            failed_item=None,
            estimate_usd=None,
            active_job=None,
            active_item=None,
            writes=Writes().mark_done(
                job.id, {"team": s.team_id, "session": s.id, "deliver": steps}
            ),
        )
        await deliver(ctx, job, s, steps)

    async def stop(self, job: Job, s: Session, *, by: str, cancel_job: str) -> None:
        """Cancel: the plan isn't rendered, or the render stops — remote jobs are deleted where
        the provider allows, what was spent stays recorded."""
        ctx = self.ctx
        items = await ctx.repo.items(s)
        for item in items.values():
            if item.remote_id and item.state in (ItemState.SUBMITTED, ItemState.READY):
                with contextlib.suppress(VideoError):
                    await ctx.video.delete(item.remote_id)
        spent = sum(i.cost_usd for i in items.values() if i.state is ItemState.FETCHED)
        steps = [f"cancelled:{cancel_job}", f"plan:{s.plan}", "card"]
        if s.status in (Status.GENERATING, Status.REGENERATING):
            steps.insert(0, f"progress:{STAGE}:{s.version + 1}")
        s = await ctx.commit(
            job,
            s,
            status=Status.CANCELLED,
            cancelled_by=by,
            failure=None,
            failed_op=None,
            spent_usd=round(s.spent_usd + spent, 6),
            estimate_usd=None,
            active_job=None,
            active_item=None,
            writes=Writes()
            .forget_items(s)
            .forget_cancel(s)
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps})
            .mark_done(cancel_job, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        self._clear(s)
        await deliver(ctx, job, s, steps)

    # --- helpers -------------------------------------------------------------------------
    def _progress(self, s: Session, run: _Render) -> blocks.Rendered:
        rows = [(i, state, pct) for i, (state, pct) in sorted(run.progress.items())]
        return blocks.video_progress(s, run.n, rows, total=len(run.plan.clips))

    async def _tick(self, job: Job, s: Session, run: _Render) -> None:
        """Live progress, throttled like the story's (best effort: a busy workspace just sees
        fewer updates)."""
        slot = f"{STAGE}:v{run.n}:progress"
        last: list[tuple[int, str, int]] = []
        while True:
            await asyncio.sleep(self.ctx.settings.progress_interval_s)
            rows = [(i, st, pct) for i, (st, pct) in sorted(run.progress.items())]
            if rows == last:
                continue
            last = rows
            if not await self.ctx.repo.holds(s.team_id, s.id, job.fence):
                return
            with contextlib.suppress(SlackDeliveryError):
                await show_message(self.ctx, job, s, slot, self._progress(s, run), best_effort=True)
                if s.card_at:
                    card = blocks.session_card(s, progress=_card_progress(run))
                    await self.ctx.gateway.update(s, s.card_at, card, best_effort=True)

    def _spool(self, s: Session, name: str) -> Path:
        path = self.ctx.spool / s.team_id / s.id / name.replace(":", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _clear(self, s: Session) -> None:
        folder = self.ctx.spool / s.team_id / s.id
        for path in folder.glob(f"{STAGE}_*"):
            with contextlib.suppress(OSError):
                path.unlink()


def _card_progress(run: _Render) -> str:
    """``🎬 Rendering the video: clip 3 of 6 · 40 %`` (or joining, once every clip is in)."""
    total = len(run.plan.clips)
    for position, (_index, (state, pct)) in enumerate(sorted(run.progress.items()), start=1):
        if state != "done":
            return f"🎬 Rendering the video: clip {position} of {total} · {pct} %"
    return f"🎬 Rendering the video: all {total} clips made, joining them…"


def run_size(ctx: FlowContext) -> str:
    return ctx.settings.video_size


def _used(order: dict[int, int], clip: ClipResult) -> float:
    return float(order.get(clip.index, clip.seconds))


def _scene(clip: ClipPlan, text: str) -> str:
    return f"Scene {clip.scene} (clip {clip.index}): {text}"
