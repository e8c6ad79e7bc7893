"""What operators use: admin API keys, the user administration both the admin API and the
CLI call, and the audit log."""
