"""I/O, threads and wiring: watcher, store, job queue, scheduler, CLI."""
