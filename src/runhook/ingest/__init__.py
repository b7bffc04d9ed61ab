"""The events socket: the wire protocol and its decoder, admission of a chunk of
lines (idempotency by id and scope, routing), answers in order, and the CLI's
queries and commands. Imports the rooms below it (evaluate and down)."""
