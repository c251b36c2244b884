"""``geekblog migrate``: find a Celery codebase's constructs, classify them, and rewrite what is safe (issue 16)."""
