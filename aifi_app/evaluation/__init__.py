"""The evaluation the steering group acts on: turnaround, availability, accuracy (from
people's verdicts) and input variation, computed from the queue database. Qt-free."""
