"""Running core.extractors over images: the job queue, the pass, the sidecar store, idle unloading."""
