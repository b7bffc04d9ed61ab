"""The floor every room stands on: wire events, the configuration Struct base,
execution ids and template contexts, templates, durations, constants, counters
and logging. Pure; imports nothing else of runhook."""
