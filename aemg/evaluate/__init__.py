"""Leave-one-subject-out evaluation: splitters, trial features, methods and scoring kept apart."""
