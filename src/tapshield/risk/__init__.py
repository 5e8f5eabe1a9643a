"""Real-time risk control: the decision engine for each tap (docs/risk.md)."""
