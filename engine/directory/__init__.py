"""The federation's directory: structures, members, roles, mandates and address changes."""
