"""Mon espace: the member's own profile, address change (the pencil) and lists."""
