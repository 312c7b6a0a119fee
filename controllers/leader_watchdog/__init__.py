"""leader-health watchdog: stale leaders, stale apiservers and heartbeat loss after a master change."""
