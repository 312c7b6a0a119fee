"""Add-on bundles, shared below the controllers: ``model`` (pure: what a bundle is, which one fits, its
validation) and ``source`` (where bundles come from: a directory tree or ConfigMaps)."""
