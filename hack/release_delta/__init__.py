"""The release delta generator (``make release-delta``, ``make verify-delta``): docs/release-delta.md."""
