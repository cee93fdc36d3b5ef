"""Exact-aspect crop proposer.

Public API: `core.crop.proposal.propose_crop` -> `CropProposal` (JSON for
`labels/crops/<image>.crop.json`), `core.crop.preview.render_preview` (JPEG bytes), and
`core.crop.from_sidecars.analyse` (extractor results -> anomaly report + proposal, for the daemon
and the CLI). Kept import-free so that loading the config pulls in nothing else.
"""
