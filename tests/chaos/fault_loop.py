"""A seeded random fault loop: many users, two replicas, and everything failing now and then.

    python -m tests.chaos.fault_loop --seed 7 --triggers 60 --replicas 2

Starts one redis-server (AOF, appendfsync always) behind a TCP proxy that can cut connections,
the Slack and OpenAI emulators, and N app replicas as real processes (Socket Mode; the emulator
round-robins deliveries over their sockets and redelivers unacked events like Slack does, on a
shortened schedule). Then it plays a script drawn from the seed: new stories, thread replies
(feedback, rewrite requests), Regenerate / Approve / Retry clicks, concurrent double clicks and
clicks from stale clients — and, between them, faults:

- ``kill9``        SIGKILL a replica, restart it a moment later
- ``sigstop``      freeze a replica past its lease, then SIGCONT it
- ``redis_kill``   SIGKILL redis-server, restart it from its AOF
- ``proxy_reset``  reset every app↔Redis connection
- ``slack_429``    a burst of 429s (Retry-After) on a Slack Web API method
- ``llm_fault``    the LLM answers 429 / 500 or drops the stream midway
- ``image_fault``  the image API answers 429 / 500 / ``moderation_blocked`` (paid calls are
                   never retried by the app: the set shows the failure with Redo/Retry)

``--topology cluster`` runs the same loop on a Redis Cluster of 3 primaries with one replica each
(real redis-server processes, no proxy; the app gets the ``redis+cluster://`` URL). The two
single-server faults give way to one:

- ``primary_kill`` hold the writes of a random primary (``CLIENT PAUSE … WRITE``), wait until its
                   replica has all it acknowledged (INFO replication offsets), SIGKILL it, wait for
                   the replica's promotion (``cluster_state:ok``), then restart the killed node: it
                   rejoins as a replica of its successor and syncs.

The pause-and-sync before the kill is deliberate: Redis replication is asynchronous, and a
primary killed right after a write can lose that write in the failover. The loop proves the
app's side (every acknowledged write survived → nothing lost or doubled); the replication
window itself is documented in docs/RELIABILITY.md, and ``--unsynced-kills`` kills without the
pause to show it.

Sessions move through the stages: approving a story starts the reference images (made by the
OpenAI emulator, uploaded to the Slack emulator), approving those the storyboard, approving that
a video plan, whose confirmation renders the clips (the emulator's video jobs), joins them and
shows the video; a Cancel stops a plan or a render. Clicks go to a session's newest review
message, whatever its stage, and include per-image and per-scene Redo.

At the end every fault is healed, the loop waits (bounded) for the system to come to rest and
runs the checker (``tests/chaos/checker.py``). It prints the seed, the triggers, the faults by
kind, and what was lost or duplicated; the exit status is 0 only if nothing was. Every wait is
bounded. The seed fixes the script; timing still varies between runs, so a seed reproduces the
same kinds of interleavings, not the exact same one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.slack.actions import ButtonValue, StageButtonValue, parse_button
from storage.connection import Client, connect
from tests.chaos.checker import Report, Trace, check, wait_quiescent
from tests.chaos.proxy import TcpProxy
from tests.chaos.support import Replica, Replicas, chaos_env, session_slot
from tests.e2e.harness import action_ids, session_of
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import RedisClusterProcs

OWNERS = ("U0ALICE", "U0BOB", "U0CAROL")
TEAMMATES = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN")
TOPICS = (
    "eco water bottle launch",
    "refill station teaser",
    "night-run headlamp",
    "bike commuter rain jacket",
    "solar camping lantern",
    "oat milk barista edition",
)
DURATIONS = ("15s", "30s", "45s", "1m")
FEEDBACK = (
    "make it funnier",
    "shorter voice-over please",
    "focus on the refill feature",
    "add a <!channel> shout in the last scene",  # must come back escaped
    "the hook needs to land in the first 3 seconds",
    "less corporate, more playful",
    "can we start over with a beach setting?",  # the LLM reads this as a rewrite request
)
REWRITES = ("regenerate the story", "rewrite it please", "try again")
FAULT_WEIGHTS = {
    "kill9": 3.0,
    "sigstop": 2.0,
    "redis_kill": 1.2,
    "proxy_reset": 2.0,
    "slack_429": 2.0,
    "llm_fault": 2.0,
    "image_fault": 1.0,
}
# On a cluster: no proxy, and killing a whole server is a primary's failover instead.
CLUSTER_FAULT_WEIGHTS = {
    **{k: v for k, v in FAULT_WEIGHTS.items() if k not in ("redis_kill", "proxy_reset")},
    "primary_kill": 1.5,
}
TOPOLOGIES = ("single", "cluster")


@dataclass
class LoopConfig:
    seed: int = 1
    triggers: int = 60
    replicas: int = 2
    lease_s: float = 2.0
    fault_rate: float = 0.4
    pace: tuple[float, float] = (0.1, 0.5)
    max_inflight: int = 6
    quiesce_timeout: float = 120.0
    workdir: Path | None = None
    verbose: bool = True
    # Don't freeze a replica while a Slack 429 back-off may be in progress: that is how the
    # loop found the stale-worker bugs pinned by test_guarantees e2/e3 (xfail). The CI variant
    # sets it so it stays a regression gate; the documented full loop leaves it off.
    avoid_pinned_bugs: bool = False
    # "single": one redis-server behind a TCP proxy; "cluster": 3 primaries + 3 replicas.
    topology: str = "single"
    # cluster: kill a primary without first holding its writes until the replica has them
    # (shows the asynchronous-replication window; the checker may then report losses).
    unsynced_kills: bool = False

    @property
    def fault_weights(self) -> dict[str, float]:
        return CLUSTER_FAULT_WEIGHTS if self.topology == "cluster" else FAULT_WEIGHTS


@dataclass
class LoopResult:
    report: Report
    seconds: float
    quiescent: bool
    workdir: Path
    skipped: int

    @property
    def ok(self) -> bool:
        return self.quiescent and self.report.ok

    def summary(self) -> str:
        rest = "came to rest" if self.quiescent else "DID NOT come to rest"
        return (
            f"fault loop: {self.report.figures()} | {self.seconds:.0f} s, {rest}, "
            f"{self.skipped} scripted clicks skipped (button already gone)"
        )


@dataclass
class _Session:
    sid: str
    owner: str


@dataclass
class _State:
    sessions: list[_Session] = field(default_factory=list)
    redis_down: bool = False
    impaired: set[str] = field(default_factory=set)  # replicas killed or stopped right now
    skipped: int = 0


class FaultLoop:
    def __init__(self, cfg: LoopConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.state = _State()
        self._tasks: list[asyncio.Task[None]] = []
        self._faults: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(cfg.max_inflight)
        self._slack_429s = 0

    def say(self, text: str) -> None:
        if self.cfg.verbose:
            print(text, flush=True)

    # --- the world ------------------------------------------------------------------------------

    def _dump_slack(self, workdir: Path) -> None:
        """Every Web API call and every message, beside the logs, for a failed run's autopsy."""
        with (workdir / "slack-calls.jsonl").open("w") as out:
            for call in self.emu.calls:
                params = {k: v for k, v in call.params.items() if k not in ("blocks", "token")}
                row = {"at": round(call.at, 3), "method": call.method, "ok": call.ok}
                out.write(json.dumps({**row, "error": call.error, "params": params}) + "\n")
        with (workdir / "slack-messages.jsonl").open("w") as out:
            for msg in self.emu.messages:
                row = {"ts": msg.ts, "thread_ts": msg.thread_ts, "deleted": msg.deleted}
                out.write(json.dumps({**row, "metadata": msg.metadata, "text": msg.text[:80]}))
                out.write("\n")

    async def _setup_redis(self, workdir: Path) -> str:
        """Start Redis in the configured topology; returns the URL the app is given."""
        self.redis_server: RedisServer | None = None
        self.proxy: TcpProxy | None = None
        self.cluster: RedisClusterProcs | None = None
        if self.cfg.topology == "cluster":
            self.cluster = RedisClusterProcs(workdir / "cluster", replicas=1, node_timeout_ms=1500)
            await asyncio.to_thread(self.cluster.start)
            self.redis: Client = connect(self.cluster.url)
            return self.cluster.url
        self.redis_server = RedisServer(workdir / "redis")
        await asyncio.to_thread(self.redis_server.start)
        self.redis = connect(self.redis_server.url)
        self.proxy = await TcpProxy(self.redis_server.port).start()
        return self.proxy.url

    async def _setup(self, workdir: Path) -> None:
        redis_url = await self._setup_redis(workdir)
        self.emu = await SlackEmulator().start()
        self.emu.redeliver_unacked = True
        self.emu.retry_delays = (1.0, 3.0, 6.0)  # Slack: ~now, 1 min, 5 min
        self.emu.socket_wait = 10.0
        self.llm = FakeLLM(first_token_latency=0.05, tokens_per_second=1500)
        self.llm.video_queue_s, self.llm.video_render_s = 0.05, 0.3
        self.llm.video_poll_after_ms = 100
        await self.llm.start()
        self.trace = Trace(self.emu, seed=self.cfg.seed)
        env = chaos_env(
            self.emu,
            self.llm,
            redis_url,
            STORYLOOP_LEASE_SECONDS=str(self.cfg.lease_s),
            STORYLOOP_VIDEO_SIZE="320x180",
            LOG_LEVEL="INFO",
        )
        self.replicas = Replicas(workdir)
        self.apps: list[Replica] = [
            self.replicas.new(f"r{i + 1}", env) for i in range(self.cfg.replicas)
        ]
        for app in self.apps:
            await app.start()
        await self.emu.wait_connected(timeout=30, count=self.cfg.replicas)

    async def _teardown(self) -> None:
        with contextlib.suppress(Exception):
            await self.replicas.cleanup()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                await self.proxy.stop()
        with contextlib.suppress(Exception):
            await self.emu.stop()
        with contextlib.suppress(Exception):
            await self.llm.stop()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        for stop in (self.redis_server, self.cluster):
            if stop is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(stop.stop)

    # --- triggers -------------------------------------------------------------------------------

    def _card(self, sid: str) -> StoredMessage | None:
        cards = session_slot(self.emu, sid, "card")
        return cards[0] if cards else None

    def _story(self, sid: str) -> StoredMessage | None:
        stories = session_slot(self.emu, sid, "story")
        return stories[0] if stories else None

    def _review(self, sid: str) -> StoredMessage | None:
        """The session's newest message with review buttons, at whatever stage it is."""
        for msg in reversed(self.emu.bot_messages()):
            if session_of(msg) == sid and {"story_approve", "story_regenerate"} & set(
                action_ids(msg)
            ):
                return msg
        return None

    def _plan(self, sid: str) -> StoredMessage | None:
        """The session's video plan waiting for a confirmation, if any."""
        for msg in reversed(self.emu.bot_messages()):
            if session_of(msg) == sid and "video_confirm" in action_ids(msg):
                return msg
        return None

    def _retry_button(self, sid: str) -> StoredMessage | None:
        for msg in reversed(self.emu.bot_messages()):
            if session_of(msg) == sid and "story_retry" in action_ids(msg):
                return msg
        return None

    def _choose(self) -> str:
        sessions = self.state.sessions
        # Replies go only to threads whose story message exists: the thread is indexed by then
        # (a reply in the brief window before that is a known, separately tested bug).
        ready = [s for s in sessions if self._card(s.sid) and self._story(s.sid)]
        review = [s for s in ready if self._review(s.sid) is not None]
        retry = [s for s in ready if self._retry_button(s.sid)]
        plans = [s for s in ready if self._plan(s.sid)]
        options: list[tuple[str, float]] = []
        if len(sessions) < max(3, self.cfg.triggers // 5):
            options.append(("story", 3.0 if len(ready) < 2 else 1.0))
        if ready:
            options += [("reply", 3.0), ("rewrite", 0.5)]
        if review:
            options += [("regenerate", 1.0), ("approve", 2.5), ("double", 0.7), ("stale", 0.4)]
            options.append(("redo", 0.5))
        if retry:
            options.append(("retry", 1.0))
        if plans:
            options += [("confirm", 1.5), ("cancel", 0.3)]
        if not options:
            options.append(("story", 1.0))
        names, weights = zip(*options, strict=True)
        return self.rng.choices(names, weights)[0]

    def _spawn(self, make: Callable[[], Awaitable[object]]) -> None:
        async def run() -> None:
            async with self._slots:
                try:
                    await asyncio.wait_for(make(), 30)
                except AssertionError:
                    self.state.skipped += 1  # the button changed before the click: not a trigger
                except TimeoutError:
                    self.say("a scripted trigger took over 30 s")

        self._tasks.append(asyncio.create_task(run()))

    def _pick_ready(self, need: str | None = None) -> _Session | None:
        found = []
        for s in self.state.sessions:
            story = self._story(s.sid)
            if not self._card(s.sid) or story is None:
                continue
            if need == "review" and self._review(s.sid) is None:
                continue
            if need == "retry" and self._retry_button(s.sid) is None:
                continue
            found.append(s)
        return self.rng.choice(found) if found else None

    async def _new_story(self) -> None:
        owner = self.rng.choice(OWNERS)
        text = f"{self.rng.choice(DURATIONS)} {self.rng.choice(TOPICS)}"
        trigger = await self.trace.command(text, user=owner)
        if trigger.session:
            self.state.sessions.append(_Session(trigger.session, owner))

    def _script_step(self) -> int:
        """Spawn the next scripted trigger(s); returns how many triggers it makes."""
        rng, trace = self.rng, self.trace
        action = self._choose()
        if action == "story":
            self._spawn(self._new_story)
            return 1
        if action in ("reply", "rewrite"):
            s = self._pick_ready()
            card = self._card(s.sid) if s else None
            if card is None:
                return 0
            text = rng.choice(REWRITES if action == "rewrite" else FEEDBACK)
            user = rng.choice(TEAMMATES)
            self._spawn(lambda: trace.reply(card, text, user=user))
            return 1
        if action in ("confirm", "cancel"):
            found = [x for x in self.state.sessions if self._plan(x.sid)]
            chosen = rng.choice(found) if found else None
            plan = self._plan(chosen.sid) if chosen else None
            if chosen is None or plan is None:
                return 0
            button = "video_confirm" if action == "confirm" else "video_cancel"
            owner = chosen.owner
            self._spawn(lambda: trace.click(plan, button, user=owner))
            return 1
        if action == "retry":
            s = self._pick_ready("retry")
            msg = self._retry_button(s.sid) if s else None
            if s is None or msg is None:
                return 0
            owner = s.owner
            self._spawn(lambda: trace.click(msg, "story_retry", user=owner))
            return 1
        s = self._pick_ready("review")
        story = self._review(s.sid) if s else None
        if s is None or story is None:
            return 0
        if action == "redo":
            redo = [e for e in action_ids(story) if e == "stage_redo"]
            if not redo:
                return 0
            user = rng.choice(TEAMMATES)
            item = _redo_values(story)
            pick = rng.choice(item) if item else None
            self._spawn(lambda: trace.click(story, "stage_redo", user=user, value=pick))
            return 1
        if action == "regenerate":
            user = rng.choice(TEAMMATES)
            self._spawn(lambda: trace.click(story, "story_regenerate", user=user))
            return 1
        if action == "approve":
            user = s.owner if rng.random() < 0.75 else rng.choice(TEAMMATES)
            self._spawn(lambda: trace.click(story, "story_approve", user=user))
            return 1
        if action == "stale":
            stale = _stale_value(story)
            button = rng.choice(("story_regenerate", "story_approve"))
            owner = s.owner
            self._spawn(lambda: trace.click(story, button, user=owner, value=stale))
            return 1
        # Concurrent clicks on one button (a double click, or teammates at once).
        button = rng.choice(("story_regenerate", "story_approve"))
        count = rng.randint(2, 4)
        for _ in range(count):
            user = s.owner if button == "story_approve" else rng.choice(TEAMMATES)
            self._spawn(lambda user=user: trace.click(story, button, user=user))
        return count

    # --- faults ---------------------------------------------------------------------------------

    def _healthy(self) -> list[Replica]:
        return [a for a in self.apps if a.name not in self.state.impaired and a.alive]

    def _plan_faults(self) -> list[tuple[int, str]]:
        """(trigger position, fault kind): every kind at least once, the rest by weight."""
        kinds = list(self.cfg.fault_weights)
        self.rng.shuffle(kinds)
        total = max(len(kinds), round(self.cfg.triggers * self.cfg.fault_rate))
        names, weights = zip(*self.cfg.fault_weights.items(), strict=True)
        kinds += self.rng.choices(names, weights, k=total - len(kinds))
        positions = sorted(self.rng.randrange(self.cfg.triggers) for _ in kinds)
        return list(zip(positions, kinds, strict=True))

    def _slack_backoff_possible(self) -> bool:
        """A Slack 429 injected but not yet served, or served within the last 2.5 s."""
        served = [c for c in self.emu.calls if c.status == 429]
        if len(served) < self._slack_429s:
            return True
        return bool(served) and time.monotonic() - served[-1].at < 2.5

    def _available(self, kind: str) -> bool:
        if kind == "sigstop" and self.cfg.avoid_pinned_bugs and self._slack_backoff_possible():
            return False
        if kind in ("kill9", "sigstop"):
            healthy = self._healthy()
            return bool(healthy) and (self.cfg.replicas == 1 or len(healthy) >= 2)
        if kind in ("redis_kill", "proxy_reset", "primary_kill"):
            return not self.state.redis_down
        return True

    def _inject(self, kind: str) -> None:
        rng, trace, lease = self.rng, self.trace, self.cfg.lease_s
        if kind in ("kill9", "sigstop"):
            app = rng.choice(self._healthy())
            self.state.impaired.add(app.name)
            pause = (
                rng.uniform(0.3, 2.0) if kind == "kill9" else rng.uniform(lease * 1.3, lease * 2.5)
            )
            self._faults.append(asyncio.create_task(self._replica_fault(kind, app, pause)))
        elif kind == "redis_kill":
            self.state.redis_down = True
            down = rng.uniform(0.3, 1.5)
            self._faults.append(asyncio.create_task(self._redis_fault(down)))
        elif kind == "primary_kill":
            self.state.redis_down = True
            which, down = rng.randrange(3), rng.uniform(0.3, 1.5)
            self._faults.append(asyncio.create_task(self._primary_fault(which, down)))
        elif kind == "proxy_reset":
            assert self.proxy is not None
            cut = self.proxy.reset()
            trace.fault(kind, f"{cut} app↔redis connections")
        elif kind == "slack_429":
            method = rng.choice(("chat.postMessage", "chat.update", "conversations.replies"))
            count = rng.randint(1, 3)
            self.emu.fail_next(method, status=429, retry_after=1, count=count)
            self._slack_429s += count
            trace.fault(kind, f"{count}x {method}")
        elif kind == "image_fault":
            what = rng.choice(("429", "500", "moderation_blocked"))
            if what == "moderation_blocked":
                self.llm.enqueue_image_fault("moderation_blocked")
            else:
                self.llm.enqueue_image_fault("status", status=int(what), retry_after=1)
            trace.fault(kind, what)
        else:
            what = rng.choice(("429", "500", "disconnect"))
            count = rng.randint(1, 2)
            for _ in range(count):
                if what == "disconnect":
                    self.llm.enqueue_fault("disconnect_midstream", fraction=rng.uniform(0.1, 0.8))
                elif what == "429":
                    self.llm.enqueue_fault("status", status=429, retry_after=1)
                else:
                    self.llm.enqueue_fault("status", status=500)
            trace.fault(kind, f"{count}x {what}")

    async def _replica_fault(self, kind: str, app: Replica, pause: float) -> None:
        try:
            if kind == "kill9":
                await app.kill()
                self.trace.fault(kind, app.name)
                await asyncio.sleep(pause)
                await app.start()
                self.trace.recovery("restart", app.name)
            else:
                app.stop()
                self.trace.fault(kind, f"{app.name} for {pause:.1f} s")
                await asyncio.sleep(pause)
                app.cont()
                self.trace.recovery("sigcont", app.name)
        finally:
            self.state.impaired.discard(app.name)

    async def _primary_fault(self, which: int, down: float) -> None:
        """Kill one primary (the ``which``-th by port), wait for its replica's promotion, then
        restart it as a replica. Unless ``unsynced_kills``, its writes are held and its replica
        caught up first, so no acknowledged write is lost with it."""
        cluster = self.cluster
        assert cluster is not None
        try:
            primaries = sorted(await asyncio.to_thread(cluster.primaries), key=lambda n: n.port)
            node = primaries[which % len(primaries)]
            if not self.cfg.unsynced_kills:
                await asyncio.to_thread(cluster.pause_writes_and_sync, node)
            await asyncio.to_thread(cluster.kill, node)
            self.trace.fault("primary_kill", f"primary :{node.port}")
            successor = await asyncio.to_thread(cluster.wait_failover, node)
            self.trace.recovery("failover", f"cluster ok, e.g. primary :{successor.port}")
            await asyncio.sleep(down)
            await asyncio.to_thread(cluster.rejoin, node)
            self.trace.recovery("rejoin", f":{node.port} back as a replica")
        finally:
            self.state.redis_down = False

    async def _redis_fault(self, down: float) -> None:
        assert self.redis_server is not None
        try:
            await asyncio.to_thread(self.redis_server.kill)
            self.trace.fault("redis_kill", f"down {down:.1f} s")
            await asyncio.sleep(down)
            await asyncio.to_thread(self.redis_server.start)
            self.trace.recovery("redis_restart", "from AOF")
        finally:
            self.state.redis_down = False

    async def _heal(self) -> None:
        """End every fault: wait for scheduled recoveries, then make sure all is up."""
        if self._faults:
            await asyncio.wait(self._faults, timeout=30)
        for app in self.apps:
            if app.stopped:
                app.cont()
            if not app.alive:
                await app.start()
                self.trace.recovery("restart", app.name)
        server = self.redis_server
        if server is not None and (server.proc is None or server.proc.poll() is not None):
            await asyncio.to_thread(server.start)
        if self.cluster is not None:
            for node in self.cluster.nodes:
                if not node.alive:
                    await asyncio.to_thread(self.cluster.rejoin, node)
                    self.trace.recovery("rejoin", f":{node.port}")
        with contextlib.suppress(AssertionError):
            await self.emu.wait_connected(timeout=30, count=self.cfg.replicas)

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> LoopResult:
        cfg = self.cfg
        workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="storyloop-chaos-"))
        started = time.monotonic()
        try:
            await self._setup(workdir)
        except BaseException:
            await self._teardown()  # a half-started world (e.g. six cluster nodes) ends here
            raise
        try:
            self.say(
                f"fault loop: seed={cfg.seed} triggers={cfg.triggers} replicas={cfg.replicas} "
                f"topology={cfg.topology} lease={cfg.lease_s}s workdir={workdir}"
            )
            plan = self._plan_faults()
            made = extra = 0
            while made < cfg.triggers or (plan and extra < 60):  # bounded tail for late faults
                if made < cfg.triggers:
                    made += self._script_step()
                else:
                    extra += 1
                due = [p for p in plan if p[0] <= made]
                for position, kind in due:
                    if self._available(kind):  # else it waits for the next step
                        self._inject(kind)
                        plan.remove((position, kind))
                await asyncio.sleep(self.rng.uniform(*cfg.pace))
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=90)
            await self._heal()
            quiet = await wait_quiescent(
                self.emu, self.redis, timeout=cfg.quiesce_timeout, settle=2.0
            )
            report = await check(self.emu, self.redis, self.trace)
            if not report.ok:
                self._dump_slack(workdir)
        finally:
            for task in [*self._tasks, *self._faults]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._faults, return_exceptions=True)
            await self._teardown()
        result = LoopResult(report, time.monotonic() - started, quiet, workdir, self.state.skipped)
        if not result.ok and self.cfg.verbose:
            self.say(report.render())
            self.say(f"replica logs and Redis data are in {workdir}")
        elif self.cfg.verbose:
            self.say("\n".join(self.trace.log()))
        self.say(result.summary())
        if result.ok and cfg.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return result


def _values(msg: StoredMessage) -> list[str]:
    found = []
    for block in msg.blocks or []:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        found += [str(e["value"]) for e in elements if isinstance(e, dict) and e.get("value")]
    return found


def _stale_value(msg: StoredMessage) -> str | None:
    """The message's own button value, one version older (a stale client's click)."""
    for raw in _values(msg):
        value = parse_button(raw)
        if isinstance(value, ButtonValue):
            return ButtonValue(session=value.session, version=max(0, value.version - 1)).encode()
        if isinstance(value, StageButtonValue):
            older = value.model_copy(update={"version": max(0, value.version - 1), "item": None})
            return older.encode()
    return None


def _redo_values(msg: StoredMessage) -> list[str]:
    return [raw for raw in _values(msg) if (v := parse_button(raw)) is not None and v.item]


async def run_loop(cfg: LoopConfig) -> LoopResult:
    return await FaultLoop(cfg).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.fault_loop", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--triggers", type=int, default=60)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--lease", type=float, default=2.0, help="STORYLOOP_LEASE_SECONDS")
    parser.add_argument("--fault-rate", type=float, default=0.4, help="faults per trigger")
    parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="single",
        help="one redis-server behind a proxy, or a 3-primary cluster with a replica each",
    )
    parser.add_argument(
        "--unsynced-kills",
        action="store_true",
        help="cluster: kill primaries without holding their writes until the replica has them",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and Redis data")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--avoid-pinned-bugs",
        action="store_true",
        help="never SIGSTOP a replica during a Slack 429 back-off (the CI variant's setting)",
    )
    args = parser.parse_args(argv)
    cfg = LoopConfig(
        seed=args.seed,
        triggers=args.triggers,
        replicas=args.replicas,
        lease_s=args.lease,
        fault_rate=args.fault_rate,
        workdir=args.workdir,
        verbose=not args.quiet,
        avoid_pinned_bugs=args.avoid_pinned_bugs,
        topology=args.topology,
        unsynced_kills=args.unsynced_kills,
    )
    result = asyncio.run(run_loop(cfg))
    if args.quiet:
        print(result.summary())
        if not result.ok:
            print(result.report.render())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
