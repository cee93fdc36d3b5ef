"""Labels learned from what the user does in Finder (pure logic; the daemon does the I/O).

- session: the session-line model in the user's schema, its JSON Schema, parsing with line numbers;
- decide: the decision rule (winner, losers, closure, corrections, idempotence);
- crop_recovery: which source a cropped image came from and its crop box, from the pixels;
- tags: Finder / xdg tag byte formats and tag subfolders;
- log_input: validation of lines given to `bestshot log`.
"""
