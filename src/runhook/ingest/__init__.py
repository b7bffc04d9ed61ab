"""The events socket and its HTTP twin (`POST /v1/events`, bearer tokens, scopes per
line): the wire protocol and its decoder, admission of a chunk of lines (idempotency
by id and scope, routing), answers in order, and the CLI's queries and commands. Imports the rooms below it (evaluate and down)."""
