"""argv → commands: serve, send, history, redeliver, test, status, reload,
check-config. The top room: it may import any other."""
