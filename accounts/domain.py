"""Account vocabulary shared by accounts, orders and risk (no ORM)."""

from django.db.models import TextChoices


class Phase(TextChoices):
    EVALUATION = "evaluation", "Evaluation"
    FUNDED = "funded", "Funded"
    LIVE = "live", "Live"
    PERSONAL = "personal", "Personal"


class AccountStatus(TextChoices):
    ACTIVE = "active", "Active"
    BREACHED = "breached", "Breached"
    PASSED = "passed", "Passed"
    CLOSED = "closed", "Closed"


class TradingState(TextChoices):
    ACTIVE = "active", "Active"  # anything the rules allow
    REDUCING = "reducing", "Reducing only"  # only orders that take exposure off
    HALTED = "halted", "Halted"  # no new orders; closing what is open is still possible
