"""Getting executions to their destinations: actors and senders, the retry
policy, signing, rate limits, the SSRF guard, the transport and channels/.
Imports config, store, triggers and core."""
