"""The Litestar HTTP JSON API: controllers grouped by resource, one error table, the app factory."""
