"""Process plumbing shared by every controller: config, logging, metrics/health, leader election."""
