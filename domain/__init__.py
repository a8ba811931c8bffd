"""The pure core of lapse-notifier: models, calendar, planner and rules. No I/O here."""
