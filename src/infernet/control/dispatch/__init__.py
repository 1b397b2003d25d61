"""Jobs: their state machine (`jobs`), placement, the driver that runs them, recovery."""
