"""What the uso-runner does to the world: rewrites objects itself, or through StorageVersionMigrations."""
