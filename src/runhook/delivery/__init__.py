"""Getting executions to their destinations: actors, senders, signing, limits."""
