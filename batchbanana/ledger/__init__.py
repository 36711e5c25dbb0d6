"""The ledger: the typed records of every attempt, the one writer that appends them, replaying them
into what is owed, and rebuilding a job from a ledger alone."""
