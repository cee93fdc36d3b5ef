"""Pure logic of bestshot: decoding, metadata, extractors, anomaly cues, crops, ranking.

Nothing here watches folders, schedules jobs or owns threads; that is daemon/'s job.
"""
