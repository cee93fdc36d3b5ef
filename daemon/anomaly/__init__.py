"""The I/O half of core.anomaly: the user's decisions as outcomes, the learned calibration and hand model."""
