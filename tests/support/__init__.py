"""Test helpers shared by the integration and end-to-end suites (not tests themselves)."""
