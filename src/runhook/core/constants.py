"""Defaults and limits, each with the reason it has the value it has."""

from __future__ import annotations

# Packaged defaults match systemd/runhook.service (RuntimeDirectory, StateDirectory).
DEFAULT_SOCKET = "/run/runhook/events.sock"
# Ten missed beats of the client's 30 s heartbeat: a long checkpoint save or a busy
# GIL delays one or two, not ten (W&B's own crash detection waits minutes too).
DEFAULT_HEARTBEAT_TIMEOUT = "5m"
# How often the site's clients heartbeat (runhook.init's default, its `heartbeat=`);
# a heartbeat_timeout under twice this is refused: one late beat would crash a live run.
DEFAULT_CLIENT_HEARTBEAT = "30s"
DEFAULT_HTTP = "127.0.0.1:8787"
DEFAULT_DATABASE = "/var/lib/runhook/runhook.db"

# A line over 1 MiB is refused (answered with an error, the connection goes on); it
# also bounds a connection's buffer.
MAX_LINE_BYTES = 1 << 20
# How much one read() takes from a socket; many lines per read keep syscalls rare.
READ_CHUNK = 256 * 1024
# Chunks (one read() each, up to READ_CHUNK bytes) read on one connection but
# not yet answered. When full, ingress stops reading that connection, so a client
# that never reads its answers cannot make the daemon buffer without end.
PENDING_CHUNKS = 16
# Lines admitted as one run at most: with PENDING_CHUNKS this bounds the answers
# a connection holds (a read of 2-byte bad lines would otherwise queue 130,000
# error lines each), and stays above the lines of a typical 256 KiB read.
CHUNK_LINES = 4096
# Bytes read from clients (socket and HTTPS together) whose events are not yet
# committed. Past it every connection stops reading until commits catch up. The
# decoded events of 8 MiB of lines take ~100 MB at their peak (a modest share of a
# training host), and two clients pipelining at full speed fit in it
# (`server.ingest_budget_mib`).
INGEST_BUDGET_BYTES = 8 << 20
# Event socket connections at once; one more gets a refusal line and is closed.
# Each holds at most PENDING_CHUNKS runs of CHUNK_LINES answers (a few MB).
MAX_SOCKET_CONNECTIONS = 1024
# Batches (one per chunk that reached the actor) queued for one scope actor.
# When full, ingress stops reading the connection that feeds it (backpressure,
# never a drop).
INBOX_SIZE = 64
# Write units queued for the single SQLite writer; a full queue slows the actors.
WRITE_QUEUE_SIZE = 16384
# Most write units applied in one transaction: large enough that thousands of
# executions per second cost a handful of fsyncs, small enough to keep the
# latency of one commit in the low milliseconds.
MAX_WRITE_BATCH = 4096

# An event `id` already accepted in the last 24 h is acknowledged, not re-evaluated.
IDEMPOTENCY_WINDOW_S = 24 * 3600
# Committed ids kept in memory for lookups without the database (~150 bytes each);
# older ones are looked up in event_ids.
RECENT_IDS_IN_MEMORY = 100_000

# Executions handed to one delivery actor in memory; past this they wait in the
# database (state PENDING) and the actor reads them back when it catches up.
DELIVERY_QUEUE_SIZE = 8192
# Rows one database scan hands to a delivery actor.
DELIVERY_SCAN_BATCH = 512
DEFAULT_IN_FLIGHT = 4
DEFAULT_TIMEOUT_S = 15.0
# Slack's documented limit for incoming webhooks: about one message per second.
SLACK_DEFAULT_RATE = "1/s"
# Teams: more than four requests a second to one webhook are throttled (Microsoft's
# "Create an Incoming Webhook" page; Workflows webhooks inherit the channel's limit).
TEAMS_DEFAULT_RATE = "4/s"
# Discord: webhooks share the channel's limit, about 30 messages a minute (its
# rate-limit headers say so per route; 429 answers carry Retry-After, honoured).
DISCORD_DEFAULT_RATE = "30/min"
# PagerDuty adjusts its Events API throttle dynamically; 429 is answered with a
# retry. Unlimited here, like a webhook: a page is never delayed by our own bucket.
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# One SMTP conversation per message; a relay rarely welcomes many at once.
EMAIL_DEFAULT_RATE = "1/s"
# An attempt keeps the first 1 KiB of the response (scrubbed of secrets before the
# cut): enough to show why an endpoint refused, not a page of HTML per attempt.
RESPONSE_KEEP_BYTES = 1024

# The loopback HTTP server. Its readers are a metrics scraper, a few browser tabs
# and scripts: 128 connections is ten times that, and a small share of the unit's
# LimitNOFILE; past it a connection gets 503 and is closed at once.
HTTP_CONNECTIONS = 128
# A connection must send its request's headers within this, and an idle
# keep-alive connection is closed after it.
HTTP_HEADER_TIMEOUT_S = 10.0
# Each answer must be sent (taken by the client) within this, or the connection
# is dropped.
HTTP_SEND_TIMEOUT_S = 30.0
# When the daemon stops, answers in progress get this long to finish (aiohttp's
# default, 60 s, would eat systemd's whole TimeoutStopSec).
HTTP_SHUTDOWN_S = 2.0
# /api/executions?limit= at most: the answer is streamed, so this bounds the work
# and time one request costs (about a second's reading at most), not memory; the
# CLI's `history` over the socket reaches further back.
HTTP_MAX_EXECUTIONS = 1000
# Rows read from the database per page of that stream, and bytes of it written at
# a time: what a client that stops reading holds in memory is about one page
# (rows are ~1 KB; their metadata can make them larger), one chunk and the
# transport's 64 KiB.
HTTP_PAGE_ROWS = 50
HTTP_CHUNK_BYTES = 64 * 1024

# After a failed write, /readyz reports the database ready again only with room
# on its disk for one event at the line limit, and once a probe write commits
# within this time (a writer slower than that is not ready either).
READINESS_ROOM_BYTES = MAX_LINE_BYTES
READINESS_PROBE_S = 2.0

DEFAULT_COOLDOWN = "24h"
# A digest's `${digest_items}` holds the first this many firings (`${digest_count}`
# counts them all): the list lives in memory while its window is open and is one
# database row when it closes; a storm of a million firings must not make it huge.
DIGEST_ITEMS_KEPT = 1000
DEFAULT_RUN_TTL = "7d"
# Bounds on what clients can make the daemon keep (README, "What is guaranteed"),
# sized for a 24 GiB host: a tracked run costs ~0.6 KB bare, ~1.6 KB with one
# 10-value window; an open digest window ~3.3 KB with one firing; a silence ~20 KiB
# of compiled RE2 at three 256-character patterns.
DEFAULT_MAX_RUNS_PER_SCOPE = 50_000
DEFAULT_MAX_DIGEST_WINDOWS_PER_SCOPE = 5_000
DEFAULT_MAX_SILENCES = 500
# `${artifact_metadata.KEY}` on a version's later events: the metadata of the latest
# this many versions per entity, each at most this large as JSON (larger is rendered
# on its artifact.created only): ~10 MB an entity at 1 KB each, 160 MB at worst.
METADATA_VERSIONS_KEPT = 10_000
METADATA_BYTES_KEPT = 16_384
DEFAULT_MAX_SILENCE_PATTERN = 256  # characters, per pattern
DEFAULT_MAX_SILENCE_DURATION = "90d"
DEFAULT_HISTORY_TTL = "30d"
# Housekeeping rounds (run eviction, idempotency ids and history purged): rare,
# since each round reads every scope's runs; a round purges until it caught up.
DEFAULT_PURGE_INTERVAL = "10m"
# SIGTERM lets deliveries in flight finish for this long, well inside systemd's
# TimeoutStopSec (90 s); what is still in flight then stays PENDING.
DEFAULT_DRAIN_TIMEOUT = "20s"
# Rows deleted per housekeeping statement, so a large purge never holds the
# writer (and every acknowledgement behind it) for long. A round repeats its
# batches, each committed before the next is queued, until one deletes fewer.
PURGE_BATCH = 5000
