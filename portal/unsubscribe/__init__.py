"""Public unsubscribe pages (no login): GET confirms, POST unsubscribes; RFC 8058 one-click."""
