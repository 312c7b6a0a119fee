"""What the addon-updater does to the world: reads bundles, applies them or writes kube-addon-manager's directory."""
