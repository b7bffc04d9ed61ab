"""The only SQL: one writer with group commit, the readers, the statements it
applies, migrations and the one-step bulk form. Imports core."""
