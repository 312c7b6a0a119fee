"""Process plumbing shared by the four controllers: config, logging, metrics/health, leader election."""
