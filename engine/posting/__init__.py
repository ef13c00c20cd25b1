"""What happens to a message posted to a list: rules, moderation, headers, footer."""
