"""One module per channel: what a request to it holds (webhook, Slack)."""
