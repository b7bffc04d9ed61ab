"""The TOML file as Structs, secrets, address and destination rules, and the
compiled settings the daemon runs on (with their runtime view). Imports core,
triggers and store."""
