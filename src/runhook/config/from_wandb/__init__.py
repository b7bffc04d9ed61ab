"""W&B automation definitions into runhook's configuration (`runhook import wandb`): pure."""
