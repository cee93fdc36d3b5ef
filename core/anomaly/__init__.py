"""Anomaly cues over the hands, pose and face sidecars.

Public API: `core.anomaly.detect.detect_anomalies` -> `core.anomaly.model.AnomalyReport`
(JSON for `sidecar/anomalies/<sha256>.json`; pass it the hands sidecar's world landmarks via
`core.anomaly.world.hand_world_from_payload`), thresholds in `core.anomaly.settings`, and the
`core.anomaly.scorer.RegionScorer` protocol for a learned per-region score. Kept import-free so
that loading the config (which imports the settings) pulls in nothing else.
"""
