"""Staff pages of the list engine: messages and their deliveries, moderation queue, captured mail."""
